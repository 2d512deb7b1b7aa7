"""`oda benchmark LAUNCH_FILE...`: train over seeds, evaluate each planner on fixed evaluation
seeds, and write ``results.json``, ``results.md`` and plots (success and return vs env steps,
planning latency per planner) into ``--out``. The planner ``policy`` is the reward task's mode-1
policy acting alone (``oda eval --mode reactive``), so that one table shows what planning buys
and what it costs per action."""

from __future__ import annotations

import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from agent.build import landmarks_from_replay, make_actor, make_env
from agent.evaluate import evaluate
from agent.launch import eval_overrides, load_launch
from agent.trainer import Trainer
from planners.registry import PLANNERS

POLICY = "policy"  # not a planner: the mode-1 policy alone, as `oda eval --mode reactive` labels it


def run_one(launch_file: str, seed: int, episodes: int, out: str | Path, overrides: list[str] | None = None,
            planners: list[str] | None = None, progress: bool = True, threads: int | None = None
            ) -> tuple[str, list[dict[str, Any]], list[tuple[int, float, float]]]:
    """Train one launch file at one seed, evaluate each planner: (name, result rows, eval curve of
    (env step, success rate, mean return))."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    name = load_launch(launch_file, overrides).name
    run_dir = Path(out) / name / f"seed{seed}"
    cfg = load_launch(launch_file, list(overrides or []) + [f"seed={seed}", f"run_dir={run_dir}"])
    start = time.perf_counter()
    trainer = Trainer(cfg, progress=progress)
    history = trainer.train()
    train_s = time.perf_counter() - start
    rows = []
    eval_cfg = eval_overrides(cfg, None)  # with the launch file's `evaluation:` settings
    for planner in planners or [eval_cfg.planner.name]:
        env = make_env(eval_cfg)
        reactive = planner == POLICY
        actor = make_actor(eval_cfg, trainer.model, trainer.action_dim, trainer.device,
                           planner=None if reactive else planner, env=env, mode="reactive" if reactive else "plan")
        landmarks_from_replay(actor, trainer.replay)  # a hierarchy routes over the run's own replay
        result = evaluate(env, actor, episodes, seed=0)
        row = {"launch": name, "task": cfg.env.id, "seed": seed, "planner": planner,
               "env_steps": trainer.step, "train_minutes": round(train_s / 60, 2), **result}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return name, rows, [(h["step"], h["success_rate"], h["return_mean"]) for h in history]


def run_benchmark(launch_files: list[str], seeds: list[int], episodes: int, out: str | Path,
                  overrides: list[str] | None = None, planners: list[str] | None = None,
                  progress: bool = True, workers: int = 1) -> list[dict[str, Any]]:
    """Every (launch file, seed) pair, in order or on ``workers`` processes (one torch thread each:
    several processes sharing threads on few cores run ~100x slower than one process)."""
    for launch_file in launch_files:  # fail before hours of training, not after
        if "=" in str(launch_file) and not Path(launch_file).exists():
            raise ValueError(f"{launch_file!r} is not a launch file; overrides go after --set, e.g. "
                             f"oda benchmark LAUNCH --set {launch_file}")
        cfg = load_launch(launch_file, overrides)
        for planner in planners or []:
            if planner != POLICY and planner not in PLANNERS:
                raise ValueError(f"unknown planner {planner!r} in --planners; valid: "
                                 f"{', '.join(sorted(PLANNERS))}, and {POLICY} (the mode-1 policy alone)")
            if planner == POLICY and not cfg.world_model.get("reward_hidden", 0):
                raise ValueError(f"--planners {POLICY}: {launch_file} trains no mode-1 policy (a reward task's, "
                                 f"world_model.reward_hidden > 0)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(launch_file, seed) for launch_file in launch_files for seed in seeds]
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(run_one, lf, seed, episodes, out, overrides, planners, False, 1)
                       for lf, seed in jobs]
            results = [f.result() for f in futures]
    else:
        results = [run_one(lf, seed, episodes, out, overrides, planners, progress) for lf, seed in jobs]
    rows: list[dict[str, Any]] = []
    curves: dict[str, list[tuple[int, float, float]]] = {}
    for name, job_rows, points in results:
        rows.extend(job_rows)
        curves.setdefault(name, []).extend(points)
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    (out / "results.md").write_text(markdown_table(rows))
    plot(rows, curves, out)
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Mean +- std over seeds per (launch, planner)."""
    lines = ["| launch | task | planner | seeds | env steps | success | success (any step) | return | plan ms median | "
             "plan ms p95 | train min |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["launch"], r["planner"]), []).append(r)
    for (launch, planner), rs in groups.items():
        def ms(key: str, rs: list[dict[str, Any]] = rs) -> str:
            v = np.array([r[key] for r in rs], dtype=float)
            return f"{v.mean():.3g} +- {v.std():.2g}"
        lines.append(f"| {launch} | {rs[0]['task']} | {planner} | {len(rs)} | {rs[0]['env_steps']} | "
                     f"{ms('success_rate')} | {ms('success_any_rate')} | {ms('return_mean')} | "
                     f"{ms('plan_ms_median')} | {ms('plan_ms_p95')} | {ms('train_minutes')} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], curves: dict[str, list[tuple[int, float, float]]], out: Path) -> None:
    """success_vs_steps.png (goal tasks), return_vs_steps.png (reward tasks: success is 0 throughout),
    plan_latency.png; curves are means over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for column, label, file, limits in ((1, "success rate (eval)", "success_vs_steps.png", (-0.02, 1.02)),
                                        (2, "episode return (eval)", "return_vs_steps.png", None)):
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, points in curves.items():
            steps = sorted({p[0] for p in points})
            mean = [np.mean([p[column] for p in points if p[0] == s]) for s in steps]
            ax.plot(steps, mean, marker="o", label=name)
        ax.set(xlabel="env steps", ylabel=label, ylim=limits, title=f"{label.split(' (')[0]} vs env steps")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / file, dpi=120)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    labels = sorted({(r["launch"], r["planner"]) for r in rows})
    med = [np.mean([r["plan_ms_median"] for r in rows if (r["launch"], r["planner"]) == k]) for k in labels]
    p95 = [np.mean([r["plan_ms_p95"] for r in rows if (r["launch"], r["planner"]) == k]) for k in labels]
    x = np.arange(len(labels))
    ax.bar(x - 0.2, med, 0.4, label="median")
    ax.bar(x + 0.2, p95, 0.4, label="p95")
    ax.set_xticks(x, [f"{a}\n{b}" for a, b in labels], fontsize=8)
    ax.set(ylabel="ms per planned action", title="planning latency")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "plan_latency.png", dpi=120)
    plt.close(fig)
