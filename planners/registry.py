"""Planner registry: names -> (config class, planner class), and `make_planner` with checked overrides."""

from __future__ import annotations

import dataclasses

import torch

from planners.base import Planner, PlannerConfig
from planners.cem import CEMConfig, CEMPlanner
from planners.gradient import GradientConfig, GradientPlanner
from planners.mppi import MPPIConfig, MPPIPlanner
from planners.random_shooting import RandomShootingConfig, RandomShootingPlanner

PLANNERS: dict[str, tuple[type[PlannerConfig], type[Planner]]] = {
    "cem": (CEMConfig, CEMPlanner),
    "mppi": (MPPIConfig, MPPIPlanner),
    "gradient": (GradientConfig, GradientPlanner),
    "random": (RandomShootingConfig, RandomShootingPlanner),
}


def make_planner(
    name: str, action_dim: int, device: str | torch.device = "cpu", seed: int | None = None, **overrides: object
) -> Planner:
    """Build planner ``name`` with its default config updated by ``overrides`` (config field names).

    Raises ValueError naming the valid choices for an unknown planner or config key, and the
    config's own ValueError for a bad value.
    """
    if name not in PLANNERS:
        raise ValueError(f"unknown planner {name!r}; valid planners: {', '.join(sorted(PLANNERS))}")
    config_cls, planner_cls = PLANNERS[name]
    valid = [f.name for f in dataclasses.fields(config_cls)]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown {name} planner option(s) {', '.join(map(repr, unknown))}; valid options: {', '.join(valid)}"
        )
    return planner_cls(config_cls(**overrides), action_dim, device=device, seed=seed)
