"""Perception encoders and latent (JEPA) world models."""
