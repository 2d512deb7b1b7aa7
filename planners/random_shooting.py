"""Random shooting: uniform sequences in [-1, 1], best of all. The baseline the other planners
must beat at the same budget.

``iterations`` batches of ``samples`` sequences are drawn (one dynamics call each), so the
defaults spend the same number of model evaluations as the default CEM/MPPI (512 x 6). The warm
start is candidate 0 of the first batch, so replanning never loses the previous plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from planners.base import Constraint, Dynamics, Objective, Planner, PlannerConfig, check_int, evaluate, improves, rank


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
        best_actions = init_mean.clamp(-1.0, 1.0)
        best_cost = torch.tensor(math.inf, device=self.device)
        best_violation = None if constraint is None else best_cost.clone()
        for it in range(cfg.iterations):
            torch.rand(actions.shape, generator=self.generator, out=actions)
            actions.mul_(2.0).sub_(1.0)
            if it == 0:
                actions[0] = best_actions
            ev = evaluate(z0, actions, dynamics, objective, constraint)
            top = rank(ev.rank_cost, ev.rank_violation, 1)[0]
            cost, violation = ev.rank_cost[top], None if ev.rank_violation is None else ev.rank_violation[top]
            better = improves(cost, violation, best_cost, best_violation)
            best_actions = torch.where(better, actions[top], best_actions)
            best_cost = torch.where(better, cost, best_cost)
            if violation is not None:
                best_violation = torch.where(better, violation, best_violation)
        info = {"iterations": cfg.iterations, "evaluations": cfg.iterations * cfg.samples + 1}
        return best_actions[None], info
