"""The intrinsic cost: a weighted sum of named terms scoring predicted latent trajectories.

``CostModule`` is an ``Objective`` for the planners: ``cost(z [N, H, D], actions [N, H, A])`` returns
the weighted total ``[N]`` and every active term *unweighted* ``{name: [N]}`` (so logs show what each
term measures, independent of its weight).

Constraints (guardrails) are NOT costs and do not live here: a guardrail is a hard limit the planner
must satisfy (a ``Constraint`` returning a violation amount), not something traded off against goal
progress by a weight (``agent.guardrails``). The one bridge is the ``guardrail_penalty`` term, the
soft-penalty BASELINE that hard guardrails are compared against: the guardrails' total violation
added to the cost with a weight (``LaunchConfig.guardrail_mode = "soft"``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from planners.base import check_float, check_int

CostTerm = Callable[[Tensor, Tensor, Tensor], Tensor]  # (z [N, H, D], actions [N, H, A], z_goal [D]) -> [N]


def goal_term(z: Tensor, actions: Tensor, z_goal: Tensor) -> Tensor:
    """Mean over the H predicted steps of the L2 distance to the goal latent."""
    return torch.linalg.vector_norm(z - z_goal, dim=-1).mean(dim=-1)


def goal_final_term(z: Tensor, actions: Tensor, z_goal: Tensor) -> Tensor:
    """L2 distance of the last predicted latent to the goal latent."""
    return torch.linalg.vector_norm(z[:, -1] - z_goal, dim=-1)


def action_term(z: Tensor, actions: Tensor, z_goal: Tensor) -> Tensor:
    """Mean squared action magnitude (mean over steps and action dimensions)."""
    return actions.pow(2).mean(dim=(-2, -1))


COST_TERMS: dict[str, CostTerm] = {
    "goal": goal_term,
    "goal_final": goal_final_term,
    "action": action_term,
}
PENALTY_TERM = "guardrail_penalty"  # needs a penalty callable: see CostModule.penalty
VALUE_TERM = "cost_to_go"  # needs the world model's learned cost-to-go: see CostModule.value
# Reward tasks (issue 4), from the world model's TaskHeads (see CostModule.task): "task" is the
# predicted discounted reward over the plan, negated; "critic" the critic's value of the last
# predicted latent, discounted by gamma^H and negated (the return beyond the horizon).
TASK_TERM, CRITIC_TERM = "task", "critic"
# "policy_prior": mean squared distance of the plan's actions from the mode-1 policy's action at the
# latent each one is taken in (a trust region: the critic values following the policy after the horizon,
# and the world model is only accurate near the actions that its data holds; see CostModule.__call__).
PRIOR_TERM = "policy_prior"
TERM_NAMES = (*COST_TERMS, PENALTY_TERM, VALUE_TERM, TASK_TERM, CRITIC_TERM, PRIOR_TERM)
GOAL_TERMS = (*COST_TERMS.keys() - {"action"}, VALUE_TERM)  # the terms that measure toward a goal
# "goal:<measurement>", e.g. "goal:block_xy": mean over the plan's steps of the L2 distance between the
# world model's readout of that measurement and its readout at the goal latent, in the measurement's own
# units. The latent distance weighs what the encoder learned to tell apart, not what the task's
# tolerance counts (Push: 0.2 rad of block angle moves the latent as far as 10 cm of block position);
# this term lets a launch file say which measured quantity must reach the goal (see CostModule.readout).
READOUT_PREFIX = "goal:"


@dataclass
class CriticTailConfig:
    """The critic term's value from the model's imagination (``TaskHeads.tail_value``): the policy rolled
    ``steps`` steps in the latent after the plan, the critic's value moved toward that by at most ``trust``."""

    steps: int = 50
    trust: float = 10.0

    def __post_init__(self) -> None:
        check_int("steps", self.steps, 1)
        check_float("trust", self.trust, 0.0)


def unknown_terms(names: object) -> list[str]:
    """The names among ``names`` that are no cost term (a ``goal:<key>`` term needs a non-empty key)."""
    return sorted(n for n in names if n not in TERM_NAMES
                  and not (isinstance(n, str) and n.startswith(READOUT_PREFIX) and len(n) > len(READOUT_PREFIX)))


def readout_term_keys(names: object) -> list[str]:
    """The measurements that the ``goal:<key>`` terms among ``names`` read."""
    return [n[len(READOUT_PREFIX):] for n in names if isinstance(n, str) and n.startswith(READOUT_PREFIX)]


class CostModule:
    """Weighted sum of registered cost terms toward a goal latent set with :meth:`set_goal`."""

    def __init__(self, weights: dict[str, float]) -> None:
        if not isinstance(weights, dict) or not weights:
            raise ValueError(f"cost weights must be a non-empty mapping of term -> weight, got {weights!r}")
        unknown = unknown_terms(weights)
        if unknown:
            raise ValueError(f"unknown cost term(s) {unknown}; valid terms: {sorted(TERM_NAMES)} and "
                             f"'{READOUT_PREFIX}<measurement>'")
        clean: dict[str, float] = {}
        for name, w in weights.items():
            if isinstance(w, bool) or not isinstance(w, (int, float)) or w != w or w < 0:
                raise ValueError(f"cost weight {name!r} must be a number >= 0, got {w!r}")
            clean[name] = float(w)
        self.weights = clean
        self.active = {name: w for name, w in clean.items() if w != 0.0}
        if not self.active:
            raise ValueError(f"all cost weights are 0 ({clean}); at least one term must be active")
        self.z_goal: Tensor | None = None
        # (z [N, H, D], actions [N, H, A]) -> [N], e.g. a GuardrailSet; used by the penalty term only
        self.penalty: Callable[[Tensor, Tensor], Tensor] | None = None
        # (z [N, D], z_goal [D]) -> steps [N], e.g. JEPAWorldModel.cost_to_go; the cost_to_go term scores
        # the last predicted latent with it (the critic's value beyond the planning horizon)
        self.value: Callable[[Tensor, Tensor], Tensor] | None = None
        # (z [..., D], keys) -> {key: [..., k]}, e.g. JEPAWorldModel.readout; the goal:<key> terms read it
        self.readout: Callable[[Tensor, tuple[str, ...]], dict[str, Tensor]] | None = None
        # reward tasks: world_models.task.TaskHeads (reward head + critic), for the task/critic terms
        self.task: Any = None
        # z [N, D] -> [N]: the critic term's value of the plan's last latent (None: the critic's, task.value);
        # e.g. task.tail_value with the model's step (CriticTailConfig)
        self.terminal_value: Callable[[Tensor], Tensor] | None = None
        # the latent the plan starts from [D] (set by the actor before each plan; the policy_prior term
        # needs it for the first action)
        self.z_start: Tensor | None = None

    @property
    def needs_goal(self) -> bool:
        """Whether an active term measures toward a goal latent (goal tasks) or none does (reward tasks)."""
        return any(name in GOAL_TERMS or name.startswith(READOUT_PREFIX) for name in self.active)

    def set_goal(self, z_goal: Tensor) -> None:
        """Set the goal latent ``[D]`` (a ``[1, D]`` tensor is accepted and squeezed)."""
        if not isinstance(z_goal, Tensor):
            raise ValueError(f"z_goal must be a torch.Tensor, got {type(z_goal).__name__}")
        if z_goal.ndim == 2 and z_goal.shape[0] == 1:
            z_goal = z_goal[0]
        if z_goal.ndim != 1:
            raise ValueError(f"z_goal must have shape [D], got {list(z_goal.shape)}")
        self.z_goal = z_goal.detach()

    def unmuted(self, names: list[str] | tuple[str, ...]) -> dict[str, float]:
        """The active terms left with ``names`` off; raises unless each is a term of this cost and one term at
        least stays on (a planner that mutes terms checks its setting with this when it is built)."""
        missing = sorted(set(names) - set(self.weights))
        if missing:
            raise ValueError(f"cannot mute cost term(s) {missing}: not in this cost {self.weights}, "
                             f"no active cost term of that name")
        kept = {name: w for name, w in self.active.items() if name not in names}
        if not kept:
            raise ValueError(f"muting {sorted(names)} leaves no active cost term: none would be left to plan with")
        return kept

    @contextmanager
    def muted(self, names: list[str] | tuple[str, ...]) -> Iterator[None]:
        """Within the block, the terms ``names`` are off (e.g. a goal-only term while a subgoal is the target).
        Each must be a term of this cost (one already off stays off: a level above may have muted it), and
        one term at least must stay on."""
        kept = self.unmuted(names)
        active, self.active = self.active, kept
        try:
            yield
        finally:
            self.active = active

    def __call__(self, z: Tensor, actions: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        if self.needs_goal and self.z_goal is None:
            raise RuntimeError("CostModule called before set_goal(z_goal): no goal latent to measure against")
        if z.ndim != 3 or actions.ndim != 3 or z.shape[:2] != actions.shape[:2]:
            raise ValueError(f"expected z [N, H, D] and actions [N, H, A] with equal N, H; "
                             f"got {list(z.shape)} and {list(actions.shape)}")
        z_goal = None
        if self.needs_goal:
            if z.shape[-1] != self.z_goal.shape[-1]:
                raise ValueError(f"latent dim {z.shape[-1]} does not match the goal's {self.z_goal.shape[-1]}")
            z_goal = self.z_goal.to(device=z.device, dtype=z.dtype)
        if {TASK_TERM, CRITIC_TERM} & set(self.active) and self.task is None:
            raise RuntimeError(f"cost terms {TASK_TERM!r} and {CRITIC_TERM!r} need a world model with a reward head "
                               f"and critic (reward_hidden > 0)")
        if PENALTY_TERM in self.active and self.penalty is None:
            raise RuntimeError(f"cost term {PENALTY_TERM!r} has no penalty to add (no guardrails given)")
        if PRIOR_TERM in self.active and (self.task is None or self.z_start is None):
            raise RuntimeError(f"cost term {PRIOR_TERM!r} needs the world model's mode-1 policy and the plan's "
                               f"start latent (CostModule.z_start)")
        if readout_term_keys(self.active) and self.readout is None:
            raise RuntimeError(f"cost terms {readout_term_keys(self.active)} need the world model's readouts")
        if VALUE_TERM in self.active and self.value is None:
            raise RuntimeError(f"cost term {VALUE_TERM!r} needs a world model with a value head (value_hidden > 0)")
        terms = {}
        for name in self.active:
            if name == PENALTY_TERM:
                terms[name] = self.penalty(z, actions)
            elif name == VALUE_TERM:
                terms[name] = self.value(z[:, -1], z_goal).to(z.dtype)
            elif name == TASK_TERM:
                terms[name] = -self.task.discounted_reward(z, actions).to(z.dtype)
            elif name == CRITIC_TERM:
                value = self.terminal_value or self.task.value
                terms[name] = -(self.task.gamma ** z.shape[1] * value(z[:, -1])).to(z.dtype)
            elif name == PRIOR_TERM:
                start = self.z_start.to(device=z.device, dtype=z.dtype).expand(z.shape[0], 1, -1)
                before = torch.cat([start, z[:, :-1]], dim=1)  # the latent each action is taken in
                terms[name] = (actions - self.task.policy(before).to(z.dtype)).pow(2).mean(dim=(-2, -1))
            elif name.startswith(READOUT_PREFIX):
                key = (name[len(READOUT_PREFIX):],)
                pred, goal = self.readout(z, key)[key[0]], self.readout(z_goal, key)[key[0]]
                terms[name] = torch.linalg.vector_norm(pred - goal.to(z.dtype), dim=-1).mean(dim=-1).to(z.dtype)
            else:
                terms[name] = COST_TERMS[name](z, actions, z_goal)
        total = torch.zeros(z.shape[0], device=z.device, dtype=z.dtype)
        for name, value in terms.items():
            total = total + self.active[name] * value
        return total, terms

    def __repr__(self) -> str:
        return f"CostModule({self.weights})"
