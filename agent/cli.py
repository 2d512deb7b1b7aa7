"""The oda command line.

    oda envs [--tag T] [--json]             list the env suite
    oda envs show ID [key=value ...]        PNG of the first frame + MP4 of random actions
    oda train LAUNCH_FILE [key=value ...]   train an agent (--resume continues a run)
    oda eval CHECKPOINT --episodes N --json evaluate on fixed evaluation seeds
    oda record CHECKPOINT --out FILE.mp4    video with the planned trajectory drawn in
    oda benchmark LAUNCH_FILE ... --seeds   train over seeds, evaluate, table + plots
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are parsed as YAML scalars/lists (never evaluated as code)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: expected key=value, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def _space_str(space: Any) -> str:
    import gymnasium as gym

    if isinstance(space, gym.spaces.Dict):
        return "{" + ", ".join(f"{k}: {_space_str(v)}" for k, v in space.spaces.items()) + "}"
    return f"{space.dtype}{list(space.shape)}"


def cmd_envs_list(args: argparse.Namespace) -> int:
    import envs

    rows = []
    for spec in envs.list_specs(family=args.family, tag=args.tag):
        try:
            env = envs.make(spec.id, obs=args.obs)
        except ModuleNotFoundError:
            if not spec.requires:
                raise
            rows.append({"id": spec.id, "family": spec.family, "observation": f"needs {spec.requires}",
                         "action": "-", "episode_length": spec.episode_length(), "action_repeat": spec.action_repeat,
                         "tags": list(spec.tags), "description": spec.description, "installed": False})
            continue
        try:
            length = -(-env.unwrapped.episode_steps // spec.action_repeat)
            rows.append({"id": spec.id, "family": spec.family, "observation": _space_str(env.observation_space),
                         "action": _space_str(env.action_space), "episode_length": length,
                         "action_repeat": spec.action_repeat, "tags": list(spec.tags),
                         "description": spec.description, "installed": True})
        finally:
            env.close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} tasks (obs={args.obs}; episode length in agent steps)")
    for col in ("id", "observation", "action", "episode", "repeat", "tags"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["id"], r["observation"], r["action"], str(r["episode_length"]), str(r["action_repeat"]),
                      ",".join(r["tags"]))
    Console(width=200).print(table)
    return 0


def cmd_envs_show(args: argparse.Namespace) -> int:
    import envs
    from envs.rendering import write_mp4, write_png

    env = envs.make(args.env_id, seed=args.seed, **parse_overrides(args.overrides))
    base = env.unwrapped
    out = Path(args.out)
    stem = args.env_id.replace("/", "_")
    env.reset()
    frames = [base.render_frame(args.size, args.size)]
    png = write_png(out / f"{stem}.png", frames[0])
    for _ in range(args.steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        frames.append(base.render_frame(args.size, args.size))
        if terminated or truncated:
            env.reset()
    mp4 = write_mp4(out / f"{stem}.mp4", frames, fps=int(base.metadata.get("render_fps", 30)))
    env.close()
    print(f"wrote {png}\nwrote {mp4} ({len(frames)} frames)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from agent.launch import load_launch
    from agent.trainer import Trainer

    cfg = load_launch(args.launch_file, args.overrides)
    trainer = Trainer(cfg, resume=args.resume, progress=not args.quiet)
    history = trainer.train()
    if history:
        print(json.dumps(history[-1]))
    if trainer.step_ms:
        print(json.dumps({"timing": trainer.timing_summary()}))
    print(f"run directory: {cfg.run_dir}")
    return 0


def _load_actor(args: argparse.Namespace):
    from agent.build import make_actor, make_env
    from agent.checkpoint import checkpoint_or_latest
    from agent.device import resolve_device
    from agent.launch import eval_overrides
    from agent.snapshot import load_agent

    device = resolve_device(args.device)
    path = checkpoint_or_latest(args.checkpoint)  # a run directory: its newest checkpoint
    cfg, model = load_agent(path, device)
    cfg = eval_overrides(cfg, args.overrides)
    env = make_env(cfg)
    actor = make_actor(cfg, model, env.action_space.shape[0], device, planner=args.planner,
                       planner_params=parse_overrides(args.planner_params), env=env, mode=args.mode)
    calibration = {}
    if args.calibrate:
        from agent.calibration import calibrate

        if args.calibrate < 0:
            raise ValueError(f"--calibrate must be >= 0 episodes, got {args.calibrate}")
        counts: dict[str, list[int]] = {}
        errors = calibrate(env, actor, args.calibrate, quantile=args.quantile, seed=args.seed,
                           near=args.calibrate_near, counts=counts)
        actor.guardrails.errors = errors
        calibration = {"calibration_episodes": args.calibrate, "quantile": args.quantile,
                       "calibration_near": args.calibrate_near, "calibration_samples": counts,
                       "readout_error_bound": {k: [round(float(x), 5) for x in v] for k, v in errors.items()}}
    if cfg.hierarchy is not None and args.mode == "plan":  # landmarks from the checkpoint's own replay
        from agent.build import landmarks_from_replay
        from agent.snapshot import load_replay

        landmarks_from_replay(actor, load_replay(path), args.seed, limit=None)
    return cfg, env, actor, calibration


def _eval_part(args: argparse.Namespace, indices: list[int], worker: int = 0
               ) -> tuple[Any, dict, list[dict], list[float], bool]:
    """Evaluation episodes ``indices`` on this process: (config, calibration, records, plan ms, guardrails?).
    ``oda eval --workers N`` runs one per process (``worker`` 0 .. N - 1), each loading the checkpoint (and
    calibrating) itself; each shows its own progress bar."""
    from agent.evaluate import run_episodes

    if args.workers > 1:  # a spawned worker: main()'s thread settings did not reach it
        import torch

        from agent.device import flush_denormals

        flush_denormals()
        torch.set_num_threads(args.threads or 1)
    cfg, env, actor, calibration = _load_actor(args)
    desc = "eval" if args.workers == 1 else f"eval, worker {worker + 1}/{args.workers}"
    runs, plan_ms = run_episodes(env, actor, indices, args.seed, progress=not args.quiet,
                                 desc=desc, position=worker)
    return cfg, calibration, runs, plan_ms, actor.guardrails is not None


def episode_indices(args: argparse.Namespace) -> list[int]:
    """The evaluation episodes to run: ``--only``'s indices (sorted, each once), else 0 .. --episodes - 1."""
    if args.only is None:
        if args.episodes < 1:
            raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
        return list(range(args.episodes))
    try:
        indices = sorted({int(part) for part in args.only.split(",")})
    except ValueError:
        indices = []
    if not indices or indices[0] < 0:
        raise ValueError(f"--only takes episode indices >= 0 separated by commas (e.g. 3,17), got {args.only!r}")
    return indices


def cmd_eval(args: argparse.Namespace) -> int:
    from agent.evaluate import summarise

    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    indices = episode_indices(args)
    workers = min(args.workers, len(indices))
    if workers == 1:
        parts = [_eval_part(args, indices)]
    else:  # episodes dealt round-robin; each plays as it would in one process (its seed restarts the draws)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            parts = list(pool.map(_eval_part, [args] * workers, [indices[w::workers] for w in range(workers)],
                                  range(workers)))
    cfg, calibration, guardrails = parts[0][0], parts[0][1], parts[0][4]
    runs = sorted((r for part in parts for r in part[2]), key=lambda r: r["seed"])
    summary = summarise(runs, [ms for part in parts for ms in part[3]], guardrails, args.per_episode)
    result = {"task": cfg.env.id, "mode": args.mode,
              "planner": "policy" if args.mode == "reactive" else args.planner or cfg.planner.name,
              **summary, **calibration}
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from agent.record import record
    from envs.rendering import mp4_path

    mp4_path(args.out)  # refused before the episodes run, not after
    indices = episode_indices(args)
    cfg, env, actor, calibration = _load_actor(args)
    result = record(env, actor, indices, args.out, size=args.size, seed=args.seed)
    print(json.dumps({"task": cfg.env.id, **result, **calibration}))
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from agent.benchmark import run_benchmark

    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    run_benchmark(args.launch_files, args.seeds, args.episodes, args.out, args.set, args.planners,
                  progress=not args.quiet, workers=args.workers)
    print((Path(args.out) / "results.md").read_text())
    return 0


def _add_agent_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a checkpoint directory (runs/<name>/step_XXXXXXXX) or a run directory")
    p.add_argument("overrides", nargs="*", help="decision-time overrides, e.g. guardrails='[{type: keep_out, ...}]' "
                   "or env.kwargs.speed_limit=0.1 (guardrails, cost, env.kwargs, planner, training.replan_every)")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--only", default=None, metavar="I,J,...",
                   help="instead of the first --episodes: only these episodes of the seed block (indices from 0, "
                        "e.g. the failures listed by an earlier --per-episode run); each plays as it did there")
    p.add_argument("--seed", type=int, default=0, help="evaluation seed block (disjoint from training seeds)")
    p.add_argument("--planner", default=None, help="plan with another planner: cem, mppi, gradient, random")
    p.add_argument("--planner-params", nargs="*", default=[], help="planner settings as key=value")
    p.add_argument("--device", default="auto")
    p.add_argument("--mode", default="plan", choices=["plan", "reactive"],
                   help="plan: MPC through the world model (mode 2); reactive: the mode-1 policy alone "
                        "(reward tasks trained with world_model.policy_hidden > 0)")
    p.add_argument("--calibrate", type=int, default=0, metavar="N",
                   help="first run N calibration episodes (own seeds) and widen the guardrails by the "
                        "model's readout error at each predicted step")
    p.add_argument("--quantile", type=float, default=0.99, help="error quantile used by --calibrate")
    p.add_argument("--calibrate-near", type=float, default=None, metavar="R",
                   help="with --calibrate: measure the error only on states whose true measurements lie "
                        "within R of a guardrail's zone, where an error can cause a violation")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oda", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    threads = argparse.ArgumentParser(add_help=False)
    threads.add_argument("--threads", type=int, default=None,
                         help="torch CPU threads (default: torch's); use 1 per process when running several")

    p_envs = sub.add_parser("envs", help="list registered tasks, or show one")
    p_envs.add_argument("--family", choices=["oda", "dmc", "gym", "ogbench", "robotics"], default=None)
    p_envs.add_argument("--tag", default=None, help="only tasks with this tag (e.g. goal, safety)")
    p_envs.add_argument("--obs", default="state", choices=["state", "pixels", "both"])
    p_envs.add_argument("--json", action="store_true", help="machine-readable output")
    p_envs.set_defaults(func=cmd_envs_list)
    envs_sub = p_envs.add_subparsers(dest="envs_command")
    p_show = envs_sub.add_parser("show", help="write a PNG of the first frame and an MP4 of random actions")
    p_show.add_argument("env_id")
    p_show.add_argument("overrides", nargs="*", help="task parameters as key=value (e.g. layout=4x4)")
    p_show.add_argument("--out", default="outputs/envs", help="output folder")
    p_show.add_argument("--steps", type=int, default=100, help="random-action steps in the video")
    p_show.add_argument("--size", type=int, default=256, help="frame side in pixels")
    p_show.add_argument("--seed", type=int, default=0)
    p_show.set_defaults(func=cmd_envs_show)

    p_train = sub.add_parser("train", help="train an agent from a launch file", parents=[threads])
    p_train.add_argument("launch_file")
    p_train.add_argument("overrides", nargs="*", help="launch-file overrides, e.g. training.steps=2000")
    p_train.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    p_train.add_argument("--quiet", action="store_true", help="no progress bar")
    p_train.set_defaults(func=cmd_train)

    p_eval = sub.add_parser("eval", help="evaluate a checkpoint on fixed evaluation seeds", parents=[threads])
    _add_agent_args(p_eval)
    p_eval.add_argument("--json", action="store_true", help="print one JSON object")
    p_eval.add_argument("--per-episode", action="store_true",
                        help="also list each episode (seed, success, length, violations, fallbacks, ...)")
    p_eval.add_argument("--workers", type=int, default=1,
                        help="split the episodes over this many processes (--threads each, default 1); "
                             "the results are those of one process")
    p_eval.add_argument("--quiet", action="store_true", help="no progress bar (it goes to stderr)")
    p_eval.set_defaults(func=cmd_eval)

    p_rec = sub.add_parser("record", help="write an MP4 of evaluation episodes with the plan drawn in",
                           parents=[threads])
    _add_agent_args(p_rec)
    p_rec.add_argument("--out", required=True, help="output .mp4 file")
    p_rec.add_argument("--size", type=int, default=256)
    p_rec.set_defaults(func=cmd_record)

    p_bench = sub.add_parser("benchmark", help="train over seeds, evaluate, write results.json/.md and plots",
                             parents=[threads])
    p_bench.add_argument("launch_files", nargs="+")
    p_bench.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p_bench.add_argument("--episodes", type=int, default=100, help="evaluation episodes per seed and planner")
    p_bench.add_argument("--planners", nargs="*", default=None,
                         help="planners to evaluate (default: launch file's); 'policy': the mode-1 policy alone "
                              "(reward tasks), for mode 1 vs mode 2 in one table")
    p_bench.add_argument("--set", nargs="*", default=[], help="overrides for every launch file, key=value")
    p_bench.add_argument("--out", default="outputs/benchmark")
    p_bench.add_argument("--quiet", action="store_true")
    p_bench.add_argument("--workers", type=int, default=1,
                         help="run (launch file, seed) jobs on this many processes, one torch thread each")
    p_bench.set_defaults(func=cmd_benchmark)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may also follow the options (`oda eval CKPT --episodes 5 cost=...`), where
    # argparse alone would refuse them; anything else unknown is still an error
    stray = [a for a in extra if a.startswith("-") or "=" not in a]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    if hasattr(args, "threads"):  # the commands that run torch (imported here: `oda envs` stays light)
        import torch

        from agent.device import flush_denormals

        flush_denormals()
        if args.threads:
            torch.set_num_threads(args.threads)
    try:
        return args.func(args)
    except (KeyError, ValueError, FileNotFoundError) as err:
        print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
