"""The wrappers `envs.make` puts around every family's adapter."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np


class AgentActions(gym.ActionWrapper):
    """Actions in [-1, 1] for every task: checks shape and finiteness, clips, rescales.

    A NaN/inf action or one of the wrong shape raises a ValueError naming the problem; values
    outside [-1, 1] are clipped (planners with noise overshoot by design).
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.action_space
        self._low = space.low.astype(np.float64)
        self._high = space.high.astype(np.float64)
        self._shape = space.shape
        self._identity = bool(np.all(self._low == -1.0) and np.all(self._high == 1.0))
        self._half_range = (self._high - self._low) / 2.0
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=space.shape, dtype=np.float32)

    def action(self, action: Any) -> np.ndarray:
        a = np.asarray(action, dtype=np.float64)
        if a.shape != self._shape:
            raise ValueError(f"action has shape {a.shape}, expected {self._shape}")
        # One float sum is cheaper than an element-wise check; it is not finite if any entry is not.
        if not math.isfinite(float(a.sum())) and not np.isfinite(a).all():
            raise ValueError(f"action contains NaN or inf: {a}")
        a = np.minimum(np.maximum(a, -1.0), 1.0)
        if self._identity:
            return a
        return self._low + (a + 1.0) * self._half_range


class ActionRepeat(gym.Wrapper):
    """Repeat each action ``k`` simulator steps, summing rewards; stops early at episode end.

    The returned ``info`` is the last step's, except that ``info["safety"]`` is OR-ed over the
    repeated steps so a violation between two agent decisions is never hidden.
    """

    def __init__(self, env: gym.Env, k: int):
        super().__init__(env)
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"action_repeat must be an int >= 1, got {k!r}")
        self.k = k

    def step(self, action):
        total = 0.0
        safety: dict[str, bool] = {}
        for _ in range(self.k):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            for key, value in info.get("safety", {}).items():
                safety[key] = bool(safety.get(key, False) or value)
            if terminated or truncated:
                break
        if safety:
            info["safety"] = safety
        return obs, total, terminated, truncated, info
