"""MPPI-style planner: the sampling loop of `planners.cem` with an exponentially weighted refit.

The weighting runs over the ELITES (the ``elites`` best samples under the constraint-aware
ranking), not all samples; set ``elites = samples`` for classic all-sample MPPI. Weights are
``softmax(-score / temperature)``. With ``normalize_costs`` (default) the score is the elite cost
rescaled to [0, 1] over the elites, so ``temperature`` is relative to the elite cost spread and
means the same thing whatever the scale of the latent cost (which drifts while the world model
trains); without it the temperature is in raw cost units. With a constraint, when any elite is
feasible only feasible elites get weight; otherwise elites are weighted by violation instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from planners.base import SamplingConfig, check_float
from planners.cem import SamplingPlanner


@dataclass
class MPPIConfig(SamplingConfig):
    temperature: float = 0.5
    normalize_costs: bool = True

    def validate(self) -> None:
        super().validate()
        check_float("temperature", self.temperature, 0.0, low_open=True)
        if not isinstance(self.normalize_costs, bool):
            raise ValueError(f"normalize_costs must be a bool, got {self.normalize_costs!r}")


class MPPIPlanner(SamplingPlanner):
    config_cls = MPPIConfig
    config: MPPIConfig

    def _refit(self, elites: Tensor, cost: Tensor, violation: Tensor | None) -> tuple[Tensor, Tensor]:
        score = cost
        if violation is not None:
            feasible = violation <= 0
            score = torch.where(feasible.any(), torch.where(feasible, cost, math.inf), violation)
        if self.config.normalize_costs:
            finite = torch.isfinite(score)
            low = torch.where(finite, score, math.inf).min()
            high = torch.where(finite, score, -math.inf).max()
            score = (score - low) / (high - low).clamp_min(1e-8)
        # All-infinite scores give NaN weights: fall back to equal weights.
        weights = torch.softmax(-score / self.config.temperature, dim=0).nan_to_num(1.0 / score.shape[0])
        weights = weights[:, None, None]
        mean = (weights * elites).sum(0)
        std = (weights * (elites - mean).square()).sum(0).sqrt()
        return mean, std
