"""Rollout videos: the camera frame with the planned trajectory (and, planning hierarchically, the
subgoals) drawn into the scene; planning from pixels, the goal image to its right.

The plan is drawn from the world model's own readout of its predicted latents (e.g. where it
believes the agent will be), so the picture shows what the agent imagines, next to what
happens. The goal and the env's own zones are drawn by the env; the guardrails' planar discs and
boxes (which may differ, e.g. moved at evaluation time) are drawn flat and translucent, and the
frame gets a red border on every step where the simulator reports a safety violation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agent.actor import MPCActor
from agent.evaluate import evaluate
from agent.guardrails import KeepOut, KeepOutBox, SpeedLimitInZone
from envs.rendering import write_mp4

# Measurements whose first two entries are a planar world position, in order of preference.
POSITION_KEYS = ("agent_xy", "ee_pos", "pusher_xy", "fingertip_xy", "block_pose")
MARKER_HEIGHT = 0.05  # m above the floor plane of our planar tasks


def plan_markers(actor: MPCActor, radius: float) -> list[tuple[np.ndarray, tuple, float]]:
    """Spheres along the predicted positions of the current plan (read out from its latents)."""
    plan = actor.last_plan
    heads = getattr(actor.model, "readout_keys", None) or ()
    key = next((k for k in POSITION_KEYS if k in heads), None)
    if plan is None or key is None:
        return []
    with torch.no_grad():
        xy = actor.model.readout(plan.latents)[key][:, :2].cpu().numpy()
    n = len(xy)
    return [(np.array([x, y, MARKER_HEIGHT]), (0.1, 0.4 + 0.6 * i / max(n - 1, 1), 1.0, 0.9), radius)
            for i, (x, y) in enumerate(xy)]


def subgoal_markers(actor: MPCActor, radius: float) -> list[tuple[np.ndarray, tuple, float]]:
    """Hierarchical planning, read out like the plan: the current subgoal (large magenta), the
    subgoals still on the route (small magenta) and where the coarse model predicts k steps toward
    the subgoal lead (violet)."""
    plan = actor.last_plan
    heads = getattr(actor.model, "readout_keys", None) or ()
    key = next((k for k in POSITION_KEYS if k in heads), None)
    if plan is None or key is None or "subgoal" not in plan.info:
        return []
    route = list(getattr(actor.planner, "route", []))[1:]
    latents = [(plan.info["subgoal"], (1.0, 0.1, 0.8, 0.9), 2.0 * radius)]
    latents += [(z, (1.0, 0.3, 0.9, 0.6), radius) for z in route]
    if "coarse_next" in plan.info:
        latents.append((plan.info["coarse_next"], (0.5, 0.2, 1.0, 0.9), 1.5 * radius))
    with torch.no_grad():
        xy = actor.model.readout(torch.stack([z for z, _, _ in latents]))[key][:, :2].cpu().numpy()
    return [(np.array([x, y, MARKER_HEIGHT]), rgba, r) for (x, y), (_, rgba, r) in zip(xy, latents, strict=True)]


def zone_markers(actor: MPCActor) -> list[tuple[np.ndarray, tuple, tuple]]:
    """A thin translucent floor disc or box per planar zone guardrail, its margin included (keep-out
    red-orange, speed zones orange)."""
    markers = []
    for g in actor.guardrails.guardrails if actor.guardrails is not None else []:
        rgba = (1.0, 0.6, 0.1, 0.3) if isinstance(g, SpeedLimitInZone) else (1.0, 0.3, 0.1, 0.35)
        if isinstance(g, (KeepOut, SpeedLimitInZone)) and len(g.center) == 2:
            markers.append((np.array([*g.center, 0.0]), rgba, (g.radius + g.margin, 0.002)))
        elif isinstance(g, KeepOutBox) and len(g.low) == 2:
            low, high = np.asarray(g.low, dtype=np.float64), np.asarray(g.high, dtype=np.float64)
            markers.append((np.array([*(low + high) / 2, 0.0]), rgba, (*((high - low) / 2 + g.margin), 0.002)))
    return markers


def red_border(frame: np.ndarray, width: int = 3) -> np.ndarray:
    frame = frame.copy()
    red = np.array([230, 20, 20], dtype=frame.dtype)
    frame[:width], frame[-width:], frame[:, :width], frame[:, -width:] = red, red, red, red
    return frame


def beside_goal(frame: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """The frame with the goal image (nearest-neighbour scaled to the frame's height) to its right."""
    h = frame.shape[0]
    rows = np.arange(h) * goal.shape[0] // h
    cols = np.arange(goal.shape[1] * h // goal.shape[0]) * goal.shape[0] // h
    return np.concatenate([frame, goal[rows][:, cols]], axis=1)


def goal_image(env: gym.Env, actor: MPCActor) -> np.ndarray | None:
    """The goal as the agent sees it when it plans from pixels (the last frame of a stack), else None."""
    space = env.observation_space
    if not actor.cost.needs_goal or space.dtype != np.uint8 or len(space.shape) not in (3, 4):
        return None
    goal = np.asarray(env.unwrapped.goal_observation())
    return goal if goal.ndim == 3 else goal[-1]


def record(env: gym.Env, actor: MPCActor, episodes: int | Sequence[int], out: str | Path, size: int = 256,
           seed: int = 0, marker_radius: float | None = None) -> dict[str, Any]:
    """Evaluate ``episodes`` episodes (a count, or the evaluation episode indices) and write them as one
    MP4; returns the evaluation summary."""
    frames: list[np.ndarray] = []
    base = env.unwrapped
    if marker_radius is None:  # about 1.5% of the scene's extent
        physics = getattr(base, "physics", None)
        marker_radius = 0.015 * float(physics.model.stat.extent) if physics is not None else 0.03
    radius = marker_radius

    zones = zone_markers(actor)
    goal_cache: dict[str, Any] = {}  # rendered once per goal, not per frame

    def current_goal_image() -> np.ndarray | None:
        key = actor.cost.z_goal  # None on reward tasks: no goal, and no image beside the frame
        if "image" not in goal_cache or goal_cache["key"] is not key:
            goal_cache.update(key=key, image=goal_image(env, actor))
        return goal_cache["image"]

    def on_step(env: gym.Env, actor: MPCActor, info: dict) -> None:
        frame = base.render_frame(size, size, zones + plan_markers(actor, radius) + subgoal_markers(actor, radius))
        violated = any(bool(v) for v in info.get("safety", {}).values())
        frame = red_border(frame) if violated else frame
        goal = current_goal_image()  # each episode has its own goal
        frames.append(frame if goal is None else beside_goal(frame, goal))

    summary = evaluate(env, actor, episodes, seed=seed, on_step=on_step)
    path = write_mp4(out, frames, fps=int(base.metadata.get("render_fps", 30)))
    return {**summary, "video": str(path), "frames": len(frames)}
