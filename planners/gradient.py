"""Gradient-based MPC: Adam on the action sequences through the differentiable dynamics and cost.

``restarts`` candidate sequences start from the warm start (candidate 0 exactly, the others plus
Gaussian noise of ``init_std``) and take ``iterations`` Adam steps together, each followed by a
projection onto [-1, 1]. A constraint enters the loss as ``constraint_weight * violation`` during
optimisation; the hard feasibility check happens in the ranking of the result. The per-candidate
best iterate seen is kept (a large step can overshoot), and the final evaluation ranks those and
the last iterates together, returning the single best.

Gradients are taken with `torch.autograd.grad` with respect to the actions only, so the world
model's parameters never accumulate ``.grad`` from planning.
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
    check_float,
    check_int,
    evaluate,
)

_BETA1, _BETA2, _EPS = 0.9, 0.999, 1e-8


@dataclass
class GradientConfig(PlannerConfig):
    iterations: int = 30
    lr: float = 0.1
    restarts: int = 16
    init_std: float = 0.3  # noise around the warm start for candidates 1..restarts-1
    constraint_weight: float = 10.0  # penalty on the violation during optimisation

    def validate(self) -> None:
        super().validate()
        check_int("iterations", self.iterations, 1)
        check_int("restarts", self.restarts, 1)
        check_float("lr", self.lr, 0.0, low_open=True)
        check_float("init_std", self.init_std, 0.0)
        check_float("constraint_weight", self.constraint_weight, 0.0)


class GradientPlanner(Planner):
    config_cls = GradientConfig
    config: GradientConfig

    def _search(
        self, z0: Tensor, init_mean: Tensor, dynamics: Dynamics, objective: Objective, constraint: Constraint | None
    ) -> tuple[Tensor, dict[str, Any]]:
        cfg = self.config
        shape = (cfg.restarts, cfg.horizon, self.action_dim)
        noise = torch.randn(shape, generator=self.generator, device=self.device)
        noise[0] = 0.0
        actions = (init_mean + cfg.init_std * noise).clamp_(-1.0, 1.0).requires_grad_(True)
        adam_m, adam_v = torch.zeros(shape, device=self.device), torch.zeros(shape, device=self.device)
        best = Incumbent(actions.detach().clone(), constrained=constraint is not None)
        for it in range(1, cfg.iterations + 1):
            with torch.enable_grad():
                ev = evaluate(z0, actions, dynamics, objective, constraint)
                loss = ev.cost.sum()
                if ev.violation is not None and cfg.constraint_weight > 0:
                    loss = loss + cfg.constraint_weight * ev.violation.sum()
                if not loss.requires_grad:
                    raise ValueError(
                        "the gradient planner needs dynamics and objective differentiable in the actions "
                        "(is the model run under torch.no_grad()/inference_mode or detached?)"
                    )
                (grad,) = torch.autograd.grad(loss, [actions])
            with torch.no_grad():
                best.offer(actions.detach(), ev.rank_cost, ev.rank_violation)
                grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
                # Adam, written out: torch.optim's first construction imports torch._dynamo (~2 s).
                adam_m.mul_(_BETA1).add_(grad, alpha=1.0 - _BETA1)
                adam_v.mul_(_BETA2).addcmul_(grad, grad, value=1.0 - _BETA2)
                denom = (adam_v / (1.0 - _BETA2**it)).sqrt_().add_(_EPS)
                actions.addcdiv_(adam_m, denom, value=-cfg.lr / (1.0 - _BETA1**it)).clamp_(-1.0, 1.0)
        info = {"iterations": cfg.iterations, "evaluations": (cfg.iterations + 2) * cfg.restarts}
        return torch.cat([best.actions, actions.detach()]), info
