"""Sampling-based MPC: the shared Gaussian search loop and the cross-entropy method (CEM).

Each iteration draws ``samples`` sequences from N(mean, std) clamped to [-1, 1] (sample 0 is the
mean itself, so the warm start is always among the candidates), evaluates them all with one
dynamics call, ranks them (constraint-aware) and refits mean/std from the ``elites`` best.

Returned sequence: the better (by the same ranking) of the final mean and the best sample seen in
any iteration. The mean alone can be worse than every elite when the elites are multimodal (going
left or right around an obstacle averages into going through it); the best sample alone is noisier.
Evaluating both costs one extra dynamics call with N = 2, which also gives `Plan` its latents,
cost and terms for exactly the returned actions. The returned sequence becomes the warm start.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from planners.base import Constraint, Dynamics, Incumbent, Objective, Planner, SamplingConfig, evaluate, rank


@dataclass
class CEMConfig(SamplingConfig):
    pass


class SamplingPlanner(Planner):
    """The Gaussian sampling loop; subclasses define how elites refit the distribution.
    ``Plan.info["candidate"]`` says which final candidate won: 0 = the final mean, 1 = the best sample."""

    config: SamplingConfig

    @abc.abstractmethod
    def _refit(self, elites: Tensor, cost: Tensor, violation: Tensor | None) -> tuple[Tensor, Tensor]:
        """Elites [K, H, A] best first, their cost [K] and violation [K] -> (mean, std) [H, A]."""

    @torch.no_grad()
    def _search(
        self, z0: Tensor, init_mean: Tensor, dynamics: Dynamics, objective: Objective, constraint: Constraint | None
    ) -> tuple[Tensor, dict[str, Any]]:
        cfg = self.config
        n, shape = cfg.samples, (cfg.samples, cfg.horizon, self.action_dim)
        mean = init_mean.clamp(-1.0, 1.0)
        std = torch.full_like(mean, cfg.init_std)
        actions = torch.empty(shape, device=self.device)
        best = Incumbent(mean, constrained=constraint is not None)
        for _ in range(cfg.iterations):
            torch.randn(shape[0] - 1, *shape[1:], generator=self.generator, out=actions[1:])
            actions[1:].mul_(std).add_(mean).clamp_(-1.0, 1.0)
            actions[0] = mean
            if self._proposals is not None:  # the mode-1 policy's sequences take the last slots
                actions[-self._proposals.shape[0]:] = self._proposals
            ev = evaluate(z0, actions, dynamics, objective, constraint)
            elite_idx = rank(ev.rank_cost, ev.rank_violation, cfg.elites)
            top = elite_idx[0]
            best.offer(actions[top], ev.rank_cost[top], None if ev.rank_violation is None else ev.rank_violation[top])
            elite_violation = None if ev.rank_violation is None else ev.rank_violation[elite_idx]
            new_mean, new_std = self._refit(actions[elite_idx], ev.rank_cost[elite_idx], elite_violation)
            if cfg.momentum > 0:
                new_mean = cfg.momentum * mean + (1.0 - cfg.momentum) * new_mean
                new_std = cfg.momentum * std + (1.0 - cfg.momentum) * new_std
            mean, std = new_mean.clamp(-1.0, 1.0), new_std.clamp_min(cfg.min_std)
        info = {
            "iterations": cfg.iterations,
            "evaluations": cfg.iterations * n + 2,
            "final_std": float(std.mean()),
        }
        return torch.stack([mean, best.actions]), info


class CEMPlanner(SamplingPlanner):
    """Cross-entropy method: mean and std of the elites (equal weights)."""

    config_cls = CEMConfig
    config: CEMConfig

    def _refit(self, elites: Tensor, cost: Tensor, violation: Tensor | None) -> tuple[Tensor, Tensor]:
        return elites.mean(0), elites.std(0, unbiased=False)
