"""Readout-error calibration: how far the world model's predicted measurements land from the
simulator's, per predicted step, on held-out episodes.

Guardrails are checked on readouts of *predicted* latents, so "predicted safe" is only as good
as those predictions. ``calibrate`` runs the actor on calibration seeds (disjoint from training
and evaluation seeds), rolls the model out from every visited state under the actions actually
taken, and returns for each measurement the ``quantile`` of the error norm at each predicted step
(split-conformal style: with n held-out samples, the true value lies within that bound with
probability about ``quantile`` on new states from the same distribution). `GuardrailSet.errors`
takes the result and widens each guardrail by it.

Near(radius) calibration: only samples whose true measurements lie within ``radius`` of a
guardrail's zone count (`GuardrailSet.near`). A keep-out violation needs the true position inside
the zone, so the error there is what matters. Away from the zone the error may be larger (states
the model has seen less), and a global bound would shut safe paths. Steps with too few samples
near a zone for the quantile fall back to all samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from agent.actor import MPCActor, episode_goal
from agent.evaluate import EVAL_SEED_BASE

CALIBRATION_SEED_BASE = EVAL_SEED_BASE + 500_000  # evaluation uses EVAL_SEED_BASE + seed * 10_000 + i


def collect(env: gym.Env, actor: MPCActor, episodes: int, seed: int = 0) -> list[dict[str, Any]]:
    """Run the actor for ``episodes`` episodes; record observations, actions and measurements."""
    runs = []
    for i in range(episodes):
        episode_seed = CALIBRATION_SEED_BASE + seed * 10_000 + i
        obs, info = env.reset(seed=episode_seed)
        actor.reset(episode_goal(env, actor), seed=episode_seed)
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


Near = Callable[[dict[str, Tensor]], dict[str, "Tensor | None"]]  # truth -> {key: mask or None}


def _min_samples(quantile: float) -> int:
    """The fewest samples n for which the conformal quantile ceil((n + 1) q) / n is <= 1."""
    n = 1
    while math.ceil((n + 1) * quantile) > n:
        n += 1
    return n


@torch.no_grad()
def readout_errors(model: Any, runs: list[dict[str, Any]], horizon: int, quantile: float = 0.99,
                   keys: list[str] | None = None, near: Near | None = None,
                   counts: dict[str, list[int]] | None = None) -> dict[str, Tensor]:
    """{measurement: [horizon]} ``quantile`` of ||readout(predicted z_{t+k}) - m_{t+k}|| over all
    start states t of ``runs`` (k = 1..horizon; rollouts use the executed actions).

    ``near`` (e.g. ``partial(guardrails.near, radius=r)``) keeps, per measurement and step, only
    the samples whose true measurements it marks; ``counts`` receives how many were used."""
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile!r}")
    keys = [k for k in (keys or model.readout_keys) if k in model.readout_keys]
    errors: dict[str, list[Tensor]] = {k: [] for k in keys}
    masks: dict[str, list[Tensor]] = {k: [] for k in keys}
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
        truth = {k: torch.as_tensor(v[windows + 1], device=device) for k, v in run["measurements"].items()}
        marked = near(truth) if near is not None else {}
        for k in keys:
            errors[k].append(torch.linalg.vector_norm(predicted[k] - truth[k], dim=-1))  # [starts, horizon]
            mask = marked.get(k)
            masks[k].append(torch.ones_like(errors[k][-1], dtype=torch.bool) if mask is None else mask)
    out = {}
    for k, chunks in errors.items():
        if not chunks:
            raise ValueError(f"no calibration episode has {horizon} steps: cannot calibrate {horizon}-step errors")
        e, mask = torch.cat(chunks), torch.cat(masks[k])
        bounds, used = [], []
        for step in range(horizon):
            sample = e[mask[:, step], step]
            if sample.numel() < _min_samples(quantile):  # too few near a zone: every sample counts
                sample = e[:, step]
            n = sample.numel()
            bounds.append(torch.quantile(sample, min(1.0, math.ceil((n + 1) * quantile) / n)))  # conformal
            used.append(n)
        out[k] = torch.stack(bounds)
        if counts is not None:
            counts[k] = used
    return out


def calibrate(env: gym.Env, actor: MPCActor, episodes: int, quantile: float = 0.99, seed: int = 0,
              near: float | None = None, counts: dict[str, list[int]] | None = None) -> dict[str, Tensor]:
    """Readout-error bounds for the measurements the actor's guardrails use, over its horizon;
    with ``near`` (a distance), only from samples within it of a guardrail's zone."""
    if near is not None and not (math.isfinite(near) and near >= 0):
        raise ValueError(f"near must be a finite distance >= 0, got {near!r}")
    if actor.guardrails is None:
        raise ValueError("calibration widens guardrails: the actor has none")
    keys = list(actor.guardrails.measurement_keys)
    saved, actor.guardrails.errors = actor.guardrails.errors, {}
    try:
        runs = collect(env, actor, episodes, seed)
    finally:
        actor.guardrails.errors = saved
    mask = None if near is None else partial(actor.guardrails.near, radius=near)
    horizon = min(actor.planner.horizon, actor.guardrails.horizon or actor.planner.horizon)  # the steps checked
    return readout_errors(actor.model, runs, horizon, quantile, keys, mask, counts)
