"""Planners that search action sequences through a world model (CEM, MPPI, gradient)."""
