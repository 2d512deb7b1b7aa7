"""The actor: receding-horizon MPC through the world model (mode 2, "system 2").

At decision time it sees only the current observation, the goal observation and its own
short-term memory; never ``info``, measurements or simulator state.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from agent.cost import CostModule
from agent.memory import ShortTermMemory
from planners.base import Plan, Planner
from world_models.jepa import JEPAWorldModel


class MPCActor:
    """Encode, plan toward the goal latent, execute the first ``replan_every`` actions, repeat."""

    def __init__(self, model: JEPAWorldModel, planner: Planner, cost: CostModule, replan_every: int = 1,
                 device: torch.device | str = "cpu", memory: int = 16):
        if replan_every < 1:
            raise ValueError(f"replan_every must be >= 1, got {replan_every}")
        self.model, self.planner, self.cost = model, planner, cost
        self.replan_every = replan_every
        self.device = torch.device(device)
        self.memory = ShortTermMemory(memory)
        self.last_plan: Plan | None = None
        self.plan_ms: list[float] = []
        self._queue: list[np.ndarray] = []

    def _tensor(self, obs: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=self.device)

    @torch.no_grad()
    def reset(self, goal_obs: Any) -> None:
        """Start an episode toward ``goal_obs`` (what the observation would be at the goal)."""
        self.planner.reset()
        self.memory.clear()
        self.cost.set_goal(self.model.encode(self._tensor(goal_obs)))
        self._queue = []
        self.last_plan = None

    def act(self, obs: Any) -> np.ndarray:
        """The next action in [-1, 1] for observation ``obs``."""
        if not self._queue:
            start = time.perf_counter()
            with torch.no_grad():
                z = self.model.encode(self._tensor(obs))
            plan = self.planner.plan(z, self.model.rollout, self.cost)
            self.plan_ms.append(1e3 * (time.perf_counter() - start))
            actions = plan.actions.detach().cpu().numpy()
            self._queue = list(actions[: self.replan_every])
            self.planner.shift(len(self._queue))
            self.last_plan = plan
            self.memory.push(obs, z.detach().cpu().numpy(), actions[0])
        return np.asarray(self._queue.pop(0), dtype=np.float32)
