"""The actor: receding-horizon MPC through the world model (mode 2, "system 2").

At decision time it sees only the current observation, the goal observation and its own
short-term memory; never ``info``, measurements or simulator state.

With guardrails, the planner ranks feasible plans first and the actor executes only a plan
predicted feasible over its whole horizon; when none is found it takes the task's safe
fallback (``fallback(obs)``, e.g. a brake) and counts it. With ``least_violation``, when that
fallback is itself predicted to violate at the next step, it takes instead the best plan's first
action if that is predicted to violate less (counted in ``recoveries`` as well). For every
executed action it keeps whether the model predicted a violation at the next step
(``predicted_violation``), so the evaluation can score predictions against the simulator's
ground truth.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from agent.adaptation import ResidualMemory
from agent.cost import CostModule
from agent.escape import SurpriseEscape
from agent.guardrails import GuardrailSet
from agent.memory import ShortTermMemory
from planners.base import Plan, Planner
from world_models.jepa import JEPAWorldModel

MODES = ("plan", "reactive")


def policy_proposal(model: JEPAWorldModel, horizon: int, noise: float = 0.3,
                    generator: torch.Generator | None = None) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """The planner's proposal from the model's mode-1 policy: its imagined rollout from z0, then
    ``count - 1`` more with Gaussian action noise -> [count, horizon, A]. Pass the planner's
    ``generator`` so that the noise follows its seed (repeatable evaluations)."""

    @torch.no_grad()
    def propose(z0: torch.Tensor, count: int) -> torch.Tensor:
        _, exact = model.policy.imagine(z0[None], model.predict, horizon)
        if count == 1:
            return exact
        _, noisy = model.policy.imagine(z0.expand(count - 1, -1), model.predict, horizon, noise=noise,
                                        generator=generator)
        return torch.cat([exact, noisy])

    return propose


def episode_goal(env: Any, actor: MPCActor) -> Any:
    """The goal observation the actor plans toward this episode, or None on a reward task (the
    actor's cost has no goal term): what ``actor.reset`` takes after ``env.reset``."""
    if not actor.cost.needs_goal:
        return None
    goal = np.asarray(env.unwrapped.goal_observation())
    shape = env.observation_space.shape
    if shape is not None and goal.shape != tuple(shape) and tuple(shape[1:]) == goal.shape:
        goal = np.repeat(goal[None], shape[0], axis=0)  # stacked frames: the goal held still
    return goal


class MPCActor:
    """Encode, plan toward the goal latent, execute the first ``replan_every`` actions, repeat."""

    def __init__(self, model: JEPAWorldModel, planner: Planner, cost: CostModule, replan_every: int = 1,
                 device: torch.device | str = "cpu", memory: int = 16, guardrails: GuardrailSet | None = None,
                 fallback: Callable[[Any], np.ndarray] | None = None, mode: str = "plan",
                 least_violation: bool = False, adaptation: ResidualMemory | None = None,
                 escape: SurpriseEscape | None = None):
        if replan_every < 1:
            raise ValueError(f"replan_every must be >= 1, got {replan_every}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "reactive" and adaptation is not None:
            raise ValueError("mode 'reactive' does not plan: a residual memory (adaptation) has nothing to correct")
        if escape is not None and (mode == "reactive" or guardrails is not None):
            raise ValueError("escape tumbles between plans: it needs mode 'plan' and no guardrails (a tumble's "
                             "action is checked against none)")
        if mode == "reactive" and (model.policy is None or guardrails is not None):
            raise ValueError("mode 'reactive' acts with the world model's mode-1 policy alone: it needs one "
                             "(world_model.policy_hidden > 0) and no guardrails (only plans are checked against them)")
        self.mode = mode
        self.model, self.planner, self.cost = model, planner, cost
        self.guardrails = guardrails
        self.fallback = fallback
        self.fallbacks = 0  # actions taken with no plan predicted feasible, since the last reset_stats()
        self.least_violation = least_violation
        self.recoveries = 0  # of those, the best plan's first action taken over a violating fallback
        self.predicted_violation: bool | None = None  # for the last action; None without guardrails
        self.replan_every = replan_every
        self.device = torch.device(device)
        self.memory = ShortTermMemory(memory)
        self.last_plan: Plan | None = None
        self.plan_ms: list[float] = []
        self._queue: list[tuple[np.ndarray, bool | None]] = []
        # with a residual memory the planner rolls out the model corrected by this episode's misses;
        # every step is then encoded, to compare with what the model predicted for the last action
        self.adaptation = adaptation
        self._last_step: tuple[torch.Tensor, np.ndarray] | None = None
        # with an escape the critic's promises are checked against what followed, every step
        self.escape = escape

    def _tensor(self, obs: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=self.device)

    @torch.no_grad()
    def reset(self, goal_obs: Any = None, seed: int | None = None) -> None:
        """Start an episode toward ``goal_obs`` (what the observation would be at the goal); reward
        tasks, whose cost measures no goal, pass none. ``seed`` (evaluation passes the episode's) restarts
        the planner's random draws, so that an episode plays the same wherever it falls in a run."""
        if goal_obs is None and self.cost.needs_goal:
            raise ValueError(f"the cost {self.cost.weights} measures toward a goal: reset needs the goal observation")
        self.planner.reset(seed)
        self.memory.clear()
        if goal_obs is not None:
            self.cost.set_goal(self.model.encode(self._tensor(goal_obs)))
        self._queue = []
        self.last_plan = None
        self.predicted_violation = None
        self._last_step = None
        if self.adaptation is not None:
            self.adaptation.clear()
        if self.escape is not None:
            self.escape.reset(seed)
        if self.guardrails is not None:
            self.guardrails.last_action = None

    def reset_stats(self) -> None:
        self.plan_ms.clear()
        self.fallbacks = self.recoveries = 0

    def act(self, obs: Any) -> np.ndarray:
        """The next action in [-1, 1] for observation ``obs``."""
        if self.mode == "reactive":  # mode 1: one policy call, no search
            start = time.perf_counter()
            with torch.no_grad():
                action = self.model.policy(self.model.encode(self._tensor(obs))).cpu().numpy()
            self.plan_ms.append(1e3 * (time.perf_counter() - start))
            return np.asarray(action, dtype=np.float32)
        z = None
        if self.adaptation is not None or self.escape is not None:
            with torch.no_grad():
                z = self.model.encode(self._tensor(obs))
        if self.adaptation is not None and self._last_step is not None:
            last_z, last_action = self._last_step
            self.adaptation.observe(last_z, torch.as_tensor(last_action, device=self.device), z)
        if self.escape is not None:
            self.escape.observe(z)
            tumble = self.escape.action()
            if tumble is not None:  # the queue's plan is dropped: it was made for where the agent no longer is
                self._queue = []
                self.escape.taken(tumble)
                if self.adaptation is not None:
                    self._last_step = (z, tumble)
                return tumble
        if not self._queue:
            start = time.perf_counter()
            if z is None:
                with torch.no_grad():
                    z = self.model.encode(self._tensor(obs))
            self.cost.z_start = z.reshape(-1)
            plan = self.planner.plan(z, self._dynamics, self.cost, self.guardrails)
            actions = plan.actions.detach().cpu().numpy()
            if self.guardrails is None:
                self._queue = [(a, None) for a in actions[: self.replan_every]]
            elif plan.feasible:  # predicted feasible at every step of the horizon
                self._queue = [(a, False) for a in actions[: self.replan_every]]
            else:
                self._queue = [self._fallback(obs, z, plan)]
            self.plan_ms.append(1e3 * (time.perf_counter() - start))
            self.planner.shift(len(self._queue))
            self.last_plan = plan
            self.memory.push(obs, z.detach().cpu().numpy(), self._queue[0][0])
        action, self.predicted_violation = self._queue.pop(0)
        if self.escape is not None:
            self.escape.taken(action)
        if self.adaptation is not None:
            self._last_step = (z, action)
        if self.guardrails is not None:
            self.guardrails.last_action = torch.as_tensor(action, dtype=torch.float32, device=self.device)
        return np.asarray(action, dtype=np.float32)

    @property
    def _dynamics(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The rollout plans and the fallback's check are predicted with: the model's, or the model's corrected
        by the episode's misses (a fallback judged by the uncorrected model could walk into a miss it saw)."""
        return self.model.rollout if self.adaptation is None else self.adaptation.rollout

    def executed(self, action: np.ndarray | None) -> None:
        """Tell the actor what was done after its last ``act``: the action actually taken (a trainer adds
        exploration noise) or None when the step was not its own (a random step); the residual memory then
        compares the next observation with the prediction for that action, or skips the step."""
        if self.escape is not None and action is not None:
            self.escape.taken(action)
        if self._last_step is not None:
            self._last_step = None if action is None else (self._last_step[0], np.asarray(action, np.float32))

    @torch.no_grad()
    def _fallback(self, obs: Any, z: torch.Tensor, plan: Plan) -> tuple[np.ndarray, bool]:
        """The safe fallback action and whether the model predicts a violation at the next step; with
        ``least_violation``, the infeasible plan's first action instead when the fallback is
        predicted to violate and that action is predicted to violate less."""
        self.fallbacks += 1
        action = (np.zeros(self.planner.action_dim, np.float32) if self.fallback is None
                  else np.asarray(self.fallback(obs), dtype=np.float32))
        a = torch.as_tensor(action, device=self.device).reshape(1, 1, -1)
        violation = float(self.guardrails.per_step(self._dynamics(z.reshape(1, -1), a), a)[0, 0])
        if self.least_violation and violation > 0:
            first = plan.actions[:1].reshape(1, 1, -1)
            planned = float(self.guardrails.per_step(plan.latents[:1].reshape(1, 1, -1), first)[0, 0])
            if planned < violation:
                self.recoveries += 1
                return first.reshape(-1).cpu().numpy().astype(np.float32), planned > 0
        return action, violation > 0
