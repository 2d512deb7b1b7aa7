"""Random shooting: uniform sequences in [-1, 1], best of all. The baseline the other planners
must beat at the same budget.

``iterations`` batches of ``samples`` sequences are drawn (one dynamics call each), so the
defaults spend the same number of model evaluations as the default CEM/MPPI (512 x 6). The warm
start is candidate 0 of the first batch, so replanning never loses the previous plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from planners.base import (
    Constraint,
    Dynamics,
    Incumbent,
    Objective,
    Planner,
    PlannerConfig,
    check_int,
    evaluate,
    rank,
)


@dataclass
class RandomShootingConfig(PlannerConfig):
    samples: int = 512
    iterations: int = 6

    def validate(self) -> None:
        super().validate()
        check_int("samples", self.samples, 1)
        check_int("iterations", self.iterations, 1)


class RandomShootingPlanner(Planner):
    config_cls = RandomShootingConfig
    config: RandomShootingConfig

    @torch.no_grad()
    def _search(
        self, z0: Tensor, init_mean: Tensor, dynamics: Dynamics, objective: Objective, constraint: Constraint | None
    ) -> tuple[Tensor, dict[str, Any]]:
        cfg = self.config
        actions = torch.empty(cfg.samples, cfg.horizon, self.action_dim, device=self.device)
        best = Incumbent(init_mean.clamp(-1.0, 1.0), constrained=constraint is not None)
        for it in range(cfg.iterations):
            torch.rand(actions.shape, generator=self.generator, out=actions)
            actions.mul_(2.0).sub_(1.0)
            if it == 0:
                actions[0] = best.actions
            ev = evaluate(z0, actions, dynamics, objective, constraint)
            top = rank(ev.rank_cost, ev.rank_violation, 1)[0]
            best.offer(actions[top], ev.rank_cost[top], None if ev.rank_violation is None else ev.rank_violation[top])
        info = {"iterations": cfg.iterations, "evaluations": cfg.iterations * cfg.samples + 1}
        return best.actions[None], info
