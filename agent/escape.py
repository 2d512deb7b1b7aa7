"""Getting out of a state the critic misjudges (issue 4): the critic's own surprise triggers a tumble.

A reward task's agent can fall into a state that its critic values as if it would leave it: walker-walk's
seed 0 at 100k lies face down for the rest of the episode while its critic reads 182 there, where 7
follows (BENCHMARKS.md, "the skill of rising from a prone fall"). Every plan then scores alike, and the
planner, which trusts the critic beyond its horizon, has no reason to try anything else.

The agent can see that from its own steps, without the environment's reward. For the action taken
``n = window`` steps ago, the critic promised ``Q(z_{t-n}, a_{t-n})``; what followed, in the model's own
terms, is the reward head's rewards on the latents observed since, plus the critic's value where the agent
is now:

    surprise_t = (Q(z_{t-n}, a_{t-n}) - sum_{m<n} gamma^m r(z_{t-n+m+1}, a_{t-n+m}) - gamma^n V(z_t)) / max(|Q|, 1)

A critic consistent with itself gives about 0; the prone walker's figures (Q 182, 0.03 a step) give 0.18 over 20 steps.
Above ``threshold`` the actor tumbles: one random full-force direction held for ``steps`` calls (as the
maze's ``tumble_after``), then plans again; a window after the tumble began (its own steps counted) it
judges again, and tumbles again if the promises still fail. Nothing is trained at decision time;
the tumble's draws restart with each episode's seed, so that runs repeat.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from planners.base import check_float, check_int
from planners.tumble import full_force_direction
from world_models.task import TaskHeads


@dataclass
class EscapeConfig:
    window: int = 20         # steps between the promise Q(z, a) and its check
    threshold: float = 0.1   # surprise, as a fraction of |Q|, above which the actor tumbles
    steps: int = 10          # calls one tumble's direction is held for

    def __post_init__(self) -> None:
        check_int("window", self.window, 1)
        check_float("threshold", self.threshold, 0.0, low_open=True)
        check_int("steps", self.steps, 1)


class SurpriseEscape:
    """Watches the critic's n-step surprise along an episode and holds a tumble when it is too large."""

    def __init__(self, task: TaskHeads, config: EscapeConfig, action_dim: int):
        self.task, self.config, self.action_dim = task, config, action_dim
        self.generator = torch.Generator()
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """A new episode: forget its steps; the tumbles' draws restart from ``seed`` (None: go on)."""
        if seed is not None:
            self.generator.manual_seed(int(seed))
        self._q: list[float] = []       # Q(z_j, a_j) of the actions taken since the last check restarted
        self._rewards: list[float] = []  # r(z_{j+1}, a_j)
        self._z: Tensor | None = None  # the latent observed last
        self._last: tuple[Tensor, Tensor] | None = None  # (z, a) of the last action, its Q not yet read
        self.direction: np.ndarray | None = None
        self.left = 0
        self.tumbles = 0  # this episode's (`oda eval` reports them, the trainer logs them)
        self.surprise = 0.0

    @torch.no_grad()
    def observe(self, z: Tensor) -> None:
        """The latent ``z`` [D] or [1, D] observed now: settles the last action's reward and Q, and starts a
        tumble when the action ``window`` steps back promised more than what has followed."""
        z = self._z = z.reshape(1, -1)
        if self._last is not None:
            last_z, last_a = self._last
            self._q.append(float(self.task.q(last_z, last_a)))
            self._rewards.append(float(self.task.reward(z, last_a)))
            self._last = None
        n = self.config.window
        if self.left > 0 or len(self._q) < n:
            return
        gamma = self.task.gamma
        promised = self._q[-n]
        followed = sum(gamma ** m * r for m, r in enumerate(self._rewards[-n:]))
        followed += gamma ** n * float(self.task.value(z))
        self.surprise = (promised - followed) / max(abs(promised), 1.0)
        if self.surprise > self.config.threshold:
            self.direction = full_force_direction(self.action_dim, self.generator).numpy().astype(np.float32)
            self.left, self.tumbles = self.config.steps, self.tumbles + 1
            self._q, self._rewards = [], []

    def action(self) -> np.ndarray | None:
        """The tumble's action for this call, or None (plan as usual)."""
        if self.left == 0:
            return None
        self.left -= 1
        return self.direction.copy()

    def taken(self, action: np.ndarray) -> None:
        """The action actually taken from the latent observed last (a trainer's noise included; a second call
        for the same step replaces the first); its Q is read at the next step."""
        if self._z is not None:
            a = torch.as_tensor(np.asarray(action, np.float32), device=self._z.device).reshape(1, -1)
            self._last = (self._z, a)
