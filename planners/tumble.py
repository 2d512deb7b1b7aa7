"""Getting unstuck at decision time (issue 6): a counter of calls without progress, shared by the
hierarchy's ``stuck_steps`` and ``tumble_after``, and the tumble itself.

A tumble holds one random full-force direction (on the surface of the action box) for a number of
calls. It is for places where the low level's model is wrong: against a door's frame a 4x4 agent's
model predicted the ball through the wall and the way through the door as no better, so no cost it
could score moved the ball (BENCHMARKS.md, "tumble_after").
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from planners.base import Constraint, Dynamics, Plan


def full_force_direction(action_dim: int, generator: torch.Generator) -> Tensor:
    """A random direction on the surface of the action box [-1, 1]^action_dim: one coordinate at +-1."""
    drawn = torch.randn(action_dim, generator=generator)
    return drawn / drawn.abs().max().clamp_min(1e-12)


class StepProgress:
    """How many calls since a count of steps (a cost-to-go, a route's length) last fell by at least one."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.best, self.calls = math.inf, 0

    def stalled(self, steps: float) -> int:
        """Record this call's ``steps``; the calls since the last fall by a step (0: it fell now)."""
        if steps <= self.best - 1.0:
            self.best, self.calls = steps, 0
        else:
            self.calls += 1
        return self.calls


class Tumble:
    """A random full-force direction in [-1, 1]^action_dim, drawn from ``generator``, held for ``steps`` calls
    once ``after`` calls in a row brought no progress (``StepProgress``)."""

    def __init__(self, after: int, steps: int, action_dim: int, generator: torch.Generator):
        self.after, self.steps, self.action_dim, self.generator = after, steps, action_dim, generator
        self.progress = StepProgress()
        self.reset()

    def reset(self) -> None:
        self.progress.reset()
        self.left, self.direction = 0, None

    def plan(self, z0: Tensor, steps_left: float, horizon: int, dynamics: Dynamics, objective: Any,
             constraint: Constraint | None) -> Plan | None:
        """The tumble's plan for this call, or None (plan as usual): none until ``after`` calls without
        ``steps_left`` falling by a step; scored by the objective like any plan; dropped where the constraint
        rules it out. ``self.left`` is 0 again once the last call of a tumble has been planned."""
        if self.left == 0:
            if self.progress.stalled(steps_left) < self.after:
                return None
            self.direction = full_force_direction(self.action_dim, self.generator).to(z0.device)
            self.left = self.steps
        actions = self.direction.expand(horizon, -1)[None]
        latents = dynamics(z0[None], actions)
        if constraint is not None and float(constraint(latents, actions)[0]) > 0:
            self.reset()
            return None
        cost, terms = objective(latents, actions)
        self.left -= 1
        if self.left == 0:
            self.reset()
        return Plan(actions=actions[0].clone(), latents=latents[0], cost=float(cost[0]),
                    terms={k: float(v[0]) for k, v in terms.items()}, info={"tumble": True})
