"""Planners that search action sequences through a world model (CEM, MPPI, gradient, random shooting).

    from planners import make_planner
    planner = make_planner("cem", action_dim=2, device="auto", seed=0, horizon=10)
    plan = planner.plan(z0, dynamics, objective, constraint=None)   # execute plan.actions[0]
    planner.shift(1)                                                # then replan; reset() per episode
"""

from planners.base import Constraint, Dynamics, Objective, Plan, Planner, PlannerConfig, SamplingConfig
from planners.cem import CEMConfig, CEMPlanner
from planners.gradient import GradientConfig, GradientPlanner
from planners.mppi import MPPIConfig, MPPIPlanner
from planners.random_shooting import RandomShootingConfig, RandomShootingPlanner
from planners.registry import PLANNERS, make_planner

__all__ = [
    "PLANNERS",
    "CEMConfig",
    "CEMPlanner",
    "Constraint",
    "Dynamics",
    "GradientConfig",
    "GradientPlanner",
    "MPPIConfig",
    "MPPIPlanner",
    "Objective",
    "Plan",
    "Planner",
    "PlannerConfig",
    "RandomShootingConfig",
    "RandomShootingPlanner",
    "SamplingConfig",
    "make_planner",
]
