"""Honest evaluation of an actor on fixed evaluation seeds, disjoint from training seeds.

The actor gets the observation and the goal observation only; ground truth (``success``,
``safety``, measurements) is read here, after the fact, to score the episode. An episode runs
to its time limit (or the env's own termination): success means the agent is at the goal at
the end (``success_rate``); ``success_any_rate`` counts episodes that touched the goal at any
step. With guardrails, each step's predicted violation (the model's) is scored against the
actual one (the simulator's) in ``confusion``, ``fallbacks`` counts the actions taken with no plan
predicted feasible, and ``recoveries`` those of them that were not the task's fallback (see
``MPCActor``'s ``least_violation``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from agent.actor import MPCActor, episode_goal

EVAL_SEED_BASE = 1_000_000  # training episodes are seeded below this, evaluation at and above
# Per step, with guardrails: the model's predicted violation of the executed action vs the
# simulator's ground truth. "predicted_safe_actual_violation" is the cell that must stay 0.
CONFUSION_KEYS = ("predicted_safe_actual_safe", "predicted_safe_actual_violation",
                  "predicted_violation_actual_safe", "predicted_violation_actual_violation")
# Measurements of the distance left to the goal (PointMaze / ArmReach; Push's block position and angle)
FINAL_ERRORS = ("goal_distance", "position_error", "angle_error")


def run_episode(env: gym.Env, actor: MPCActor, seed: int,
                on_step: Callable[[gym.Env, MPCActor, dict], None] | None = None) -> dict[str, Any]:
    """One episode; ``on_step`` (e.g. a video recorder) is called after reset and every step. The
    planner's generators restart from ``seed`` too: the episode's result does not depend on the
    episodes before it (``oda eval --seed 0 --episodes 10`` and ``--episodes 20`` share their first 10)."""
    obs, info = env.reset(seed=seed)
    actor.reset(episode_goal(env, actor), seed=seed)
    fallbacks, recoveries = actor.fallbacks, actor.recoveries
    if on_step:
        on_step(env, actor, info)
    total, steps, violations, reached = 0.0, 0, 0, bool(info.get("success", False))
    confusion = dict.fromkeys(CONFUSION_KEYS, 0)
    terminated = truncated = False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, info = env.step(actor.act(obs))
        total += float(reward)
        steps += 1
        flags = sum(bool(v) for v in info.get("safety", {}).values())
        violations += flags
        if actor.predicted_violation is not None:  # the model's prediction for this step vs ground truth
            predicted = "predicted_violation" if actor.predicted_violation else "predicted_safe"
            confusion[f"{predicted}_actual_{'violation' if flags else 'safe'}"] += 1
        reached = reached or bool(info.get("success", False))
        if on_step:
            on_step(env, actor, info)
    result = {"seed": seed, "return": total, "length": steps, "violations": violations,
              "success": bool(info.get("success", False)), "success_any": reached,
              "fallbacks": actor.fallbacks - fallbacks, "recoveries": actor.recoveries - recoveries,
              "confusion": confusion}
    for key in FINAL_ERRORS:  # how far from the goal the episode ended, where the task measures it
        if key in info.get("measurements", {}):
            result[f"final_{key}"] = float(info["measurements"][key][0])
    return result


def evaluate(env: gym.Env, actor: MPCActor, episodes: int, seed: int = 0,
             on_step: Callable[[gym.Env, MPCActor, dict], None] | None = None,
             per_episode: bool = False) -> dict[str, Any]:
    """Run ``episodes`` episodes with seeds ``EVAL_SEED_BASE + seed * 10_000 + i`` and summarise
    (with ``per_episode``, also each episode's own record under ``"per_episode"``)."""
    actor.reset_stats()
    runs = [run_episode(env, actor, EVAL_SEED_BASE + seed * 10_000 + i, on_step) for i in range(episodes)]
    returns = np.array([r["return"] for r in runs])
    plan_ms = np.array(actor.plan_ms) if actor.plan_ms else np.array([np.nan])
    summary = {
        "episodes": episodes,
        "success_rate": float(np.mean([r["success"] for r in runs])),
        "success_any_rate": float(np.mean([r["success_any"] for r in runs])),
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "episode_len_mean": float(np.mean([r["length"] for r in runs])),
        "plan_ms_median": float(np.median(plan_ms)),
        "plan_ms_p95": float(np.percentile(plan_ms, 95)),
        "violations_total": int(sum(r["violations"] for r in runs)),
        "violation_episodes": int(sum(r["violations"] > 0 for r in runs)),
    }
    if actor.guardrails is not None:
        summary["fallbacks"] = actor.fallbacks
        summary["recoveries"] = actor.recoveries
        summary["confusion"] = {k: sum(r["confusion"][k] for r in runs) for k in CONFUSION_KEYS}
    for key in FINAL_ERRORS:
        if all(f"final_{key}" in r for r in runs):
            summary[f"final_{key}_mean"] = float(np.mean([r[f"final_{key}"] for r in runs]))
    if per_episode:
        summary["per_episode"] = runs
    return summary
