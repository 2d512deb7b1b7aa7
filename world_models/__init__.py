"""Perception encoders and latent (JEPA) world models."""

from world_models.config import WorldModelConfig
from world_models.encoders import (
    ENCODERS,
    Encoder,
    MLPEncoder,
    RunningNormalizer,
    make_encoder,
    normalize_latent,
    register_encoder,
)
from world_models.jepa import JEPAWorldModel, collapse_diagnostics, num_parameters, variance_covariance
from world_models.pixel_encoder import ConvEncoder
from world_models.predictor import ResidualPredictor
from world_models.pretrained_encoder import PretrainedImageEncoder

__all__ = [
    "ENCODERS",
    "ConvEncoder",
    "Encoder",
    "JEPAWorldModel",
    "MLPEncoder",
    "PretrainedImageEncoder",
    "ResidualPredictor",
    "RunningNormalizer",
    "WorldModelConfig",
    "collapse_diagnostics",
    "make_encoder",
    "normalize_latent",
    "num_parameters",
    "register_encoder",
    "variance_covariance",
]
