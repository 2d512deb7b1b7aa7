"""Throughput of the env layer: steps/s through `envs.make` vs the underlying raw env, and
frames/s with 64x64 pixel observations. A benchmark, not a test:

    python -m envs.benchmark [--steps 5000] [--json out.json]

Raw baselines: ``dm_control.suite.load(...).step`` for the suite, ``gymnasium.make(id).step``
for Gymnasium tasks (with Gymnasium's default wrappers), and bare ``mujoco.mj_step`` on the
same model for our own tasks (the physics alone, a much stricter reference). Ours runs with
``action_repeat=1`` so both sides step the simulator equally often.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np

STATE_TASKS = {
    "dmc": ["dmc/cartpole-swingup", "dmc/reacher-easy", "dmc/walker-walk", "dmc/cheetah-run"],
    "gym": ["gym/Reacher-v5", "gym/HalfCheetah-v5", "gym/Hopper-v5", "gym/Ant-v5"],
    "oda": ["oda/PointMaze-v0", "oda/ArmReach-v0", "oda/Push-v0"],
}


def _rate(step_fn: Callable[[int], None], steps: int) -> float:
    start = time.perf_counter()
    step_fn(steps)
    return steps / (time.perf_counter() - start)


def _best_rates(step_fns: list[Callable[[int], None]], steps: int, rounds: int) -> list[float]:
    """Best steps/s of each runner over interleaved rounds, so that slow spells of a shared
    2-core machine hit raw and ours alike."""
    best = [0.0] * len(step_fns)
    for _ in range(rounds):
        for i, fn in enumerate(step_fns):
            best[i] = max(best[i], _rate(fn, steps))
    return best


def _ours(env_id: str, obs: str, actions: np.ndarray) -> Callable[[int], None]:
    import envs

    env = envs.make(env_id, obs=obs, action_repeat=1, seed=0)
    env.reset()

    def run(n: int) -> None:
        for i in range(n):
            _, _, terminated, truncated, _ = env.step(actions[i % len(actions)])
            if terminated or truncated:
                env.reset()

    return run


def _raw(env_id: str, actions: np.ndarray) -> Callable[[int], None]:
    family, name = env_id.split("/", 1)
    if family == "dmc":
        from dm_control import suite

        domain, task = name.split("-", 1)
        env = suite.load(domain, task, task_kwargs={"random": 0})
        env.reset()

        def run(n: int) -> None:
            for i in range(n):
                if env.step(actions[i % len(actions)]).last():
                    env.reset()

        return run
    if family == "gym":
        import gymnasium as gym

        env = gym.make(name)
        env.reset(seed=0)
        low, high = env.action_space.low, env.action_space.high
        native = low + (actions + 1.0) * 0.5 * (high - low)

        def run(n: int) -> None:
            for i in range(n):
                _, _, terminated, truncated, _ = env.step(native[i % len(native)])
                if terminated or truncated:
                    env.reset()

        return run
    import mujoco

    import envs

    physics = envs.make(env_id).unwrapped.physics
    model, data, nsub = physics.model, physics.data, physics.n_substeps
    low, high = model.actuator_ctrlrange[:, 0], model.actuator_ctrlrange[:, 1]
    native = low + (actions + 1.0) * 0.5 * (high - low)

    def run(n: int) -> None:
        for i in range(n):
            data.ctrl[:] = native[i % len(native)]
            mujoco.mj_step(model, data, nstep=nsub)

    return run


def main(argv: list[str] | None = None) -> dict:
    import envs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved raw/ours rounds (best is kept)")
    parser.add_argument("--pixel-steps", type=int, default=500)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)

    results = []
    for family, ids in STATE_TASKS.items():
        for env_id in ids:
            dim = envs.make(env_id).action_space.shape[0]
            actions = np.random.default_rng(0).uniform(-1, 1, size=(1000, dim)).astype(np.float32)
            raw, ours = _best_rates([_raw(env_id, actions), _ours(env_id, "state", actions)], args.steps, args.rounds)
            fps = _rate(_ours(env_id, "pixels", actions), args.pixel_steps)
            row = {"id": env_id, "family": family, "raw_steps_per_s": round(raw), "ours_steps_per_s": round(ours),
                   "overhead_pct": round(100.0 * (raw / ours - 1.0), 1),
                   "added_us_per_step": round(1e6 * (1.0 / ours - 1.0 / raw), 1), "pixels64_frames_per_s": round(fps)}
            results.append(row)
            print(json.dumps(row), flush=True)

    from rich.console import Console
    from rich.table import Table

    table = Table(title="env throughput (state obs, action_repeat=1; pixels 64x64)")
    for col in ("id", "raw steps/s", "ours steps/s", "overhead %", "added us/step", "pixels frames/s"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(r["id"], str(r["raw_steps_per_s"]), str(r["ours_steps_per_s"]), str(r["overhead_pct"]),
                      str(r["added_us_per_step"]), str(r["pixels64_frames_per_s"]))
    Console(width=120).print(table)
    out = {"results": results, "steps": args.steps, "rounds": args.rounds}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
