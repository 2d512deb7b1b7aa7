"""Readout-error calibration: how far the world model's predicted measurements land from the
simulator's, per predicted step, on held-out episodes.

Guardrails are checked on readouts of *predicted* latents, so "predicted safe" is only as good
as those predictions. ``calibrate`` runs the actor on calibration seeds (disjoint from training
and evaluation seeds), rolls the model out from every visited state under the actions actually
taken, and returns for each measurement the ``quantile`` of the error norm at each predicted step
(split-conformal style: with n held-out samples, the true value lies within that bound with
probability about ``quantile`` on new states from the same distribution). `GuardrailSet.errors`
takes the result and widens each guardrail by it.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from agent.actor import MPCActor
from agent.evaluate import EVAL_SEED_BASE

CALIBRATION_SEED_BASE = EVAL_SEED_BASE + 500_000  # evaluation uses EVAL_SEED_BASE + seed * 10_000 + i


def collect(env: gym.Env, actor: MPCActor, episodes: int, seed: int = 0) -> list[dict[str, Any]]:
    """Run the actor for ``episodes`` episodes; record observations, actions and measurements."""
    runs = []
    for i in range(episodes):
        obs, info = env.reset(seed=CALIBRATION_SEED_BASE + seed * 10_000 + i)
        actor.reset(env.unwrapped.goal_observation())
        observations, actions = [obs], []
        measurements = {k: [v] for k, v in info["measurements"].items()}
        terminated = truncated = False
        while not (terminated or truncated):
            action = actor.act(obs)
            obs, _, terminated, truncated, info = env.step(action)
            observations.append(obs)
            actions.append(action)
            for k, v in info["measurements"].items():
                measurements[k].append(v)
        runs.append({"obs": np.asarray(observations, np.float32), "actions": np.asarray(actions, np.float32),
                     "measurements": {k: np.asarray(v, np.float32) for k, v in measurements.items()}})
    return runs


@torch.no_grad()
def readout_errors(model: Any, runs: list[dict[str, Any]], horizon: int, quantile: float = 0.99,
                   keys: list[str] | None = None) -> dict[str, Tensor]:
    """{measurement: [horizon]} ``quantile`` of ||readout(predicted z_{t+k}) - m_{t+k}|| over all
    start states t of ``runs`` (k = 1..horizon; rollouts use the executed actions)."""
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile!r}")
    keys = [k for k in (keys or model.readout_keys) if k in model.readout_keys]
    errors: dict[str, list[Tensor]] = {k: [] for k in keys}
    device = model.device
    for run in runs:
        steps = len(run["actions"])
        if steps < horizon:
            continue
        starts = np.arange(steps - horizon + 1)
        windows = starts[:, None] + np.arange(horizon)
        z0 = model.encode(torch.as_tensor(run["obs"][starts], device=device))
        z = model.rollout(z0, torch.as_tensor(run["actions"][windows], device=device))
        predicted = model.readout(z)
        for k in keys:
            truth = torch.as_tensor(run["measurements"][k][windows + 1], device=device)
            errors[k].append(torch.linalg.vector_norm(predicted[k] - truth, dim=-1))  # [starts, horizon]
    out = {}
    for k, chunks in errors.items():
        if not chunks:
            raise ValueError(f"no calibration episode has {horizon} steps: cannot calibrate {horizon}-step errors")
        e = torch.cat(chunks)
        n = e.shape[0]
        q = min(1.0, math.ceil((n + 1) * quantile) / n)  # finite-sample conformal correction
        out[k] = torch.quantile(e, q, dim=0)
    return out


def calibrate(env: gym.Env, actor: MPCActor, episodes: int, quantile: float = 0.99, seed: int = 0
              ) -> dict[str, Tensor]:
    """Readout-error bounds for the measurements the actor's guardrails use, over its horizon."""
    if actor.guardrails is None:
        raise ValueError("calibration widens guardrails: the actor has none")
    keys = list(actor.guardrails.measurement_keys)
    saved, actor.guardrails.errors = actor.guardrails.errors, {}
    try:
        runs = collect(env, actor, episodes, seed)
    finally:
        actor.guardrails.errors = saved
    return readout_errors(actor.model, runs, actor.planner.horizon, quantile, keys)
