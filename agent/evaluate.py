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

from collections.abc import Callable, Iterable
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

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
    if actor.escape is not None:  # the escape's tumbles (agent.escape), this episode
        result["tumbles"] = actor.escape.tumbles
    for key in FINAL_ERRORS:  # how far from the goal the episode ended, where the task measures it
        if key in info.get("measurements", {}):
            result[f"final_{key}"] = float(info["measurements"][key][0])
    return result


def episode_seed(seed: int, index: int) -> int:
    """The env seed of evaluation episode ``index`` of seed block ``seed``."""
    return EVAL_SEED_BASE + seed * 10_000 + index


def run_episodes(env: gym.Env, actor: MPCActor, indices: Iterable[int], seed: int = 0,
                 on_step: Callable[[gym.Env, MPCActor, dict], None] | None = None, progress: bool = False,
                 desc: str = "eval", position: int = 0) -> tuple[list[dict[str, Any]], list[float]]:
    """Episodes ``indices`` of seed block ``seed``: their records and the ms of every plan made. Episodes
    are independent of their order (see ``run_episode``), so blocks may be split across processes.
    ``progress`` shows a bar on stderr with the success count and mean return so far."""
    actor.reset_stats()
    indices = list(indices)
    runs: list[dict[str, Any]] = []
    with tqdm(indices, desc=desc, unit="episode", disable=not progress, position=position) as bar:
        for i in bar:
            runs.append(run_episode(env, actor, episode_seed(seed, i), on_step))
            bar.set_postfix(success=f"{sum(r['success'] for r in runs)}/{len(runs)}",
                            ret=f"{np.mean([r['return'] for r in runs]):.1f}")
    return runs, list(actor.plan_ms)


def summarise(runs: list[dict[str, Any]], plan_ms: list[float], guardrails: bool,
              per_episode: bool = False) -> dict[str, Any]:
    """The evaluation summary of episode records (``run_episode``'s) and plan times; with ``guardrails``
    also the fallback, recovery and confusion counts; with ``per_episode`` the records themselves."""
    returns = np.array([r["return"] for r in runs])
    ms = np.array(plan_ms) if plan_ms else np.array([np.nan])
    summary = {
        "episodes": len(runs),
        "success_rate": float(np.mean([r["success"] for r in runs])),
        "success_any_rate": float(np.mean([r["success_any"] for r in runs])),
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "episode_len_mean": float(np.mean([r["length"] for r in runs])),
        "plan_ms_median": float(np.median(ms)),
        "plan_ms_p95": float(np.percentile(ms, 95)),
        "violations_total": int(sum(r["violations"] for r in runs)),
        "violation_episodes": int(sum(r["violations"] > 0 for r in runs)),
    }
    if guardrails:
        summary["fallbacks"] = int(sum(r["fallbacks"] for r in runs))
        summary["recoveries"] = int(sum(r["recoveries"] for r in runs))
        summary["confusion"] = {k: sum(r["confusion"][k] for r in runs) for k in CONFUSION_KEYS}
    if runs and all("tumbles" in r for r in runs):
        summary["tumbles"] = int(sum(r["tumbles"] for r in runs))
        summary["tumble_episodes"] = int(sum(r["tumbles"] > 0 for r in runs))
    for key in FINAL_ERRORS:
        if all(f"final_{key}" in r for r in runs):
            summary[f"final_{key}_mean"] = float(np.mean([r[f"final_{key}"] for r in runs]))
    if per_episode:
        summary["per_episode"] = runs
    return summary


def evaluate(env: gym.Env, actor: MPCActor, episodes: int | Iterable[int], seed: int = 0,
             on_step: Callable[[gym.Env, MPCActor, dict], None] | None = None,
             per_episode: bool = False) -> dict[str, Any]:
    """Run ``episodes`` episodes (a count: indices 0 .. n - 1; or the indices themselves) with seeds
    ``EVAL_SEED_BASE + seed * 10_000 + i`` and summarise (with ``per_episode``, also each episode's own
    record under ``"per_episode"``)."""
    indices = range(episodes) if isinstance(episodes, int) else episodes
    runs, plan_ms = run_episodes(env, actor, indices, seed, on_step)
    return summarise(runs, plan_ms, actor.guardrails is not None, per_episode)
