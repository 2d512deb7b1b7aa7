"""Audit a reward-task agent's critic against the returns it really earns (a benchmark, not used by the agent).

    python -m agent.critic_audit CHECKPOINT_OR_RUN [key=value ...] [--episodes 10] [--seed 0] [--mode plan|reactive]

Runs the evaluation episodes of ``oda eval`` (same seeds, same overrides) and, at every agent step,
compares the critic's ``Q(z_t, a_t)`` for the action taken with the discounted return the episode
really paid from there, ``G_t = sum_k gamma^k r_{t+k}`` (a time-limit end is bootstrapped with the
critic's own ``V(z_T)``, as training does; only steps whose tail weight ``gamma^(T-t)`` is below
``TAIL`` are scored, so the critic is judged on what happened, not on itself). A critic that values a
state far above what acting from it pays is what a short plan trusts beyond its horizon: on
walker-walk one such state (lying face down: Q 182 where 7 followed) held four of ten episodes on
the ground (BENCHMARKS.md). Also the reward head's error on the real next latent.

Prints one JSON object: per episode the return, the mean and largest ``Q - G`` over the scored
steps, the longest run of scored steps with ``Q - G`` above ``--over`` (in return units), and the
reward head's mean absolute error; the same means over the episodes.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from agent.build import make_actor, make_env
from agent.checkpoint import checkpoint_or_latest
from agent.evaluate import episode_seed
from agent.launch import eval_overrides
from agent.snapshot import load_agent

TAIL = 0.05  # a step is scored when the bootstrapped tail weighs less than this in its return


def returns_to_go(rewards: np.ndarray, gamma: float, tail_value: float = 0.0) -> np.ndarray:
    """Discounted returns G_t = r_t + gamma * G_{t+1} over one episode's rewards [T], G_T = ``tail_value``."""
    out = np.empty(len(rewards), dtype=np.float64)
    running = float(tail_value)
    for t in range(len(rewards) - 1, -1, -1):
        running = float(rewards[t]) + gamma * running
        out[t] = running
    return out


def longest_run(flags: np.ndarray) -> int:
    """The longest run of consecutive True values in a 1-d bool array."""
    best = run = 0
    for flag in flags:
        run = run + 1 if flag else 0
        best = max(best, run)
    return best


@torch.no_grad()
def audit_episode(env: Any, actor: Any, model: Any, seed: int, over: float) -> dict[str, Any]:
    """One evaluation episode with the critic's value of every action taken against the return that followed."""
    task = model.task
    obs, _ = env.reset(seed=seed)
    actor.reset(None, seed=seed)
    def encode(observation: Any) -> torch.Tensor:
        return model.encode(torch.as_tensor(np.asarray(observation), dtype=torch.float32, device=model.device))

    q_values, rewards, reward_errors = [], [], []
    terminated = truncated = False
    z = encode(obs)
    while not (terminated or truncated):
        action = actor.act(obs)
        a = torch.as_tensor(action, dtype=torch.float32, device=model.device)
        q_values.append(float(task.q(z, a)))
        obs, reward, terminated, truncated, _ = env.step(action)
        z = encode(obs)  # the next state's latent: the reward head reads it, the next step's Q starts from it
        rewards.append(float(reward))
        reward_errors.append(abs(float(task.reward(z, a)) - float(reward)))
    tail = 0.0 if terminated else float(task.value(z))  # no value past a terminal state
    gamma = float(task.gamma)
    returns = returns_to_go(np.asarray(rewards), gamma, tail)
    steps = len(rewards)
    scored = gamma ** (steps - np.arange(steps)) < TAIL
    if terminated:
        scored[:] = True  # nothing is bootstrapped
    q = np.asarray(q_values)
    gap = q - returns
    record: dict[str, Any] = {"seed": seed, "return": float(sum(rewards)), "length": steps,
                              "steps_scored": int(scored.sum()), "reward_abs_error": float(np.mean(reward_errors))}
    if scored.any():
        record.update(q_minus_return_mean=float(gap[scored].mean()), q_minus_return_max=float(gap[scored].max()),
                      q_mean=float(q[scored].mean()), return_to_go_mean=float(returns[scored].mean()),
                      longest_over=longest_run(gap[scored] > over))
    return record


def audit(checkpoint: str, overrides: list[str], episodes: int = 10, seed: int = 0, mode: str = "plan",
          over: float = 10.0, progress: bool = False) -> dict[str, Any]:
    path = checkpoint_or_latest(checkpoint)  # a run directory, as oda eval takes: its newest checkpoint
    cfg, model = load_agent(path, torch.device("cpu"))
    if model.task is None:
        raise ValueError(f"{checkpoint} has no reward head and critic to audit: it is a goal task "
                         f"(critic audits are for reward tasks, launch files with reward_hidden > 0)")
    cfg = eval_overrides(cfg, overrides)
    env = make_env(cfg)
    actor = make_actor(cfg, model, env.action_space.shape[0], torch.device("cpu"), env=env, mode=mode)
    per_episode = []
    for i in tqdm(range(episodes), desc="critic audit", unit="episode", disable=not progress):
        per_episode.append(audit_episode(env, actor, model, episode_seed(seed, i), over))
    keys = ("return", "q_minus_return_mean", "q_minus_return_max", "longest_over", "reward_abs_error")
    summary = {k: float(np.mean([r[k] for r in per_episode if k in r])) for k in keys
               if any(k in r for r in per_episode)}
    return {"checkpoint": str(path), "task": cfg.env.id, "mode": mode, "episodes": episodes,
            "gamma": float(model.task.gamma), "over": over, **summary, "per_episode": per_episode}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agent.critic_audit", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("overrides", nargs="*", help="key=value, as for oda eval")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0, help="evaluation seed block, as oda eval --seed")
    p.add_argument("--mode", choices=["plan", "reactive"], default="plan")
    p.add_argument("--over", type=float, default=10.0,
                   help="Q - G above this (return units) counts as overestimated for longest_over")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (stderr)")
    args = p.parse_args(argv)
    if args.episodes < 1:
        p.error(f"--episodes must be >= 1, got {args.episodes}")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = audit(args.checkpoint, args.overrides, args.episodes, args.seed, args.mode, args.over,
                       progress=not args.quiet)
    except (ValueError, FileNotFoundError) as exc:
        p.exit(2, f"python -m agent.critic_audit: error: {exc}\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
