"""Latency of one `plan()` call per planner, on a world-model stand-in of realistic size. A
benchmark, not a test:

    python -m planners.benchmark [--device auto] [--repeats 15] [--json out.json]

The stand-in is an MLP latent dynamics z' = z + f([z, a]) (Linear -> LayerNorm -> SiLU blocks)
rolled out step by step, scored by the goal-distance objective (mean squared latent distance to
a goal over the horizon plus the final one). Two sizes: latent 64 / hidden 256 / 2 layers (the
project's default predictor) and latent 128 / hidden 512 / 5 layers (~1.2M parameters, about
TD-MPC2's smallest model). Each call is timed in MPC fashion (plan, shift(1), plan, ...).

``--guardrails`` (JEPA models only) adds, for each cell, the same plan under the guardrails of
``launch/armreach-safe.yaml`` (a keep-out disc and a speed limit in a zone, read out from every
predicted latent by the model's readout heads): the planning overhead of hard constraints at
the same budget. ``--clock cpu`` times this thread's CPU time instead of wall time (CPU, one
thread): on a machine shared with other jobs it measures the work, not the waiting.

``floor`` is the model alone: the same dynamics + objective calls (same batch sizes, with the
backward pass for the gradient planner) replayed without the planner; ``overhead`` = median -
floor median is what the planner itself costs (sampling, ranking, refits, bookkeeping).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from planners.base import with_precision
from planners.registry import make_planner

# latent, hidden, hidden layers; the tiny one is not run by default (what fits ~30 ms per plan on 2 CPU cores)
MODELS = {"d64-h256-l2": (64, 256, 2), "d128-h512-l5": (128, 512, 5), "d32-h128-l2": (32, 128, 2),
          # the project's own JEPA world model (its residual predictor rolls out), latent / hidden
          "jepa-d8-h128": (8, 128, 0), "jepa-d16-h128": (16, 128, 0), "jepa-d8-h256": (8, 256, 0),
          "jepa-d128-h384": (128, 384, 0), "jepa-d128-h512": (128, 512, 0)}
DEFAULT_MODELS = ["d64-h256-l2", "d128-h512-l5"]


class MLPDynamics(nn.Module):
    def __init__(self, latent: int, action: int, hidden: int, layers: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width = latent + action
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.SiLU()]
            width = hidden
        self.net = nn.Sequential(*blocks, nn.Linear(hidden, latent))

    def forward(self, z0: Tensor, actions: Tensor) -> Tensor:
        z, out = z0, []
        for t in range(actions.shape[1]):
            z = z + self.net(torch.cat([z, actions[:, t]], dim=-1))
            out.append(z)
        return torch.stack(out, dim=1)


def goal_objective(goal: Tensor) -> Callable[[Tensor, Tensor], tuple[Tensor, dict[str, Tensor]]]:
    def objective(z: Tensor, actions: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        dist = (z - goal).square().sum(-1)
        return dist.mean(1) + dist[:, -1], {"goal": dist.mean(1), "goal_final": dist[:, -1]}

    return objective


class Recorder:
    """Wraps the dynamics to record each call's batch size and whether autograd was on."""

    def __init__(self, dynamics: Callable[[Tensor, Tensor], Tensor]) -> None:
        self.dynamics, self.calls = dynamics, []

    def __call__(self, z0: Tensor, actions: Tensor) -> Tensor:
        self.calls.append((actions.shape[0], torch.is_grad_enabled()))
        return self.dynamics(z0, actions)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# The guardrails of launch/armreach-safe.yaml, on the readouts they need.
GUARDRAIL_MEASUREMENTS = {"ee_pos": 2, "ee_speed": 1}
GUARDRAILS = [
    {"type": "keep_out", "key": "ee_pos", "center": [-0.02, -0.13], "radius": 0.04, "margin": 0.005},
    {"type": "speed_limit_in_zone", "speed_key": "ee_speed", "position_key": "ee_pos", "center": [0.09, 0.08],
     "radius": 0.05, "limit": 0.2, "margin": 0.01, "speed_margin": 0.02},
]


def bench_cell(name, model, z0, objective, horizon, args, device, constraint=None) -> dict[str, float]:
    overrides = {"horizon": horizon, "precision": args.precision}
    if name != "gradient":
        overrides |= {"samples": args.samples, "iterations": args.iterations}
    planner = make_planner(name, args.action_dim, device=device, seed=0, **overrides)
    recorder = Recorder(model)
    for _ in range(args.warmup):  # also records the call pattern (batch sizes, autograd) for the floor
        recorder.calls.clear()
        planner.plan(z0, recorder, objective, constraint)
        planner.shift(1)
    calls, generator = list(recorder.calls), torch.Generator(device=device).manual_seed(0)
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    floor_model = with_precision(model, args.precision, device)
    times, floors = [], []
    for _ in range(args.repeats):  # interleaved, so slow spells of a shared machine hit both alike
        _sync(device)
        start = clock()
        planner.plan(z0, model, objective, constraint)
        _sync(device)
        times.append((clock() - start) * 1e3)
        planner.shift(1)
        batches = [torch.rand(n, horizon, args.action_dim, generator=generator, device=device) for n, _ in calls]
        _sync(device)
        start = clock()
        for actions, (_, grad) in zip(batches, calls, strict=True):
            with torch.set_grad_enabled(grad):
                actions.requires_grad_(grad)
                cost, _ = objective(floor_model(z0.expand(actions.shape[0], -1), actions), actions)  # no constraint
                if grad:
                    torch.autograd.grad(cost.sum(), [actions])
        _sync(device)
        floors.append((clock() - start) * 1e3)
    median, floor = statistics.median(times), statistics.median(floors)
    return {"median_ms": median, "p95_ms": _percentile(times, 0.95), "floor_ms": floor, "overhead_ms": median - floor}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--planners", nargs="+", default=["cem", "mppi", "gradient", "random"])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=list(MODELS))
    parser.add_argument("--horizons", nargs="+", type=int, default=[5, 10, 20])
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--iterations", type=int, default=6, help="for the sampling planners")
    parser.add_argument("--action-dim", type=int, default=2)
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16"],
                        help="planner precision: bfloat16 rolls candidates out under autocast")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                        help="cpu: this thread's CPU time (CPU device, --threads 1): steadier on a shared machine")
    parser.add_argument("--guardrails", action="store_true",
                        help="JEPA models: also time each cell under launch/armreach-safe.yaml's guardrails")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    from agent.device import resolve_device

    device = resolve_device(args.device)
    if args.clock == "cpu" and (device.type != "cpu" or args.threads != 1):
        parser.error("--clock cpu times one thread: use it with a CPU device and --threads 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = {"device": str(device), "threads": torch.get_num_threads(), "models": {}, "rows": []}
    results["precision"] = args.precision
    print(f"device {device}, {torch.get_num_threads()} threads, {args.samples} samples x {args.iterations} iterations, "
          f"{args.precision}")
    print("gradient planner: its defaults (restarts 16, 30 Adam steps); floor = the model alone\n")
    print(f"{'model':<14}{'params':>10}  {'planner':<9}{'H':>3}{'median':>9}{'p95':>9}{'floor':>9}{'overhead':>10}  ms"
          + ("  (+g: under guardrails)" if args.guardrails else ""))
    for model_name in args.models:
        latent, hidden, layers = MODELS[model_name]
        rails = None  # the guardrails' constraint, for JEPA models with --guardrails
        if model_name.startswith("jepa"):
            from world_models import JEPAWorldModel, WorldModelConfig

            jepa = JEPAWorldModel(WorldModelConfig(obs_dim=4, action_dim=args.action_dim, latent_dim=latent,
                                                   hidden_dim=hidden, measurement_dims=GUARDRAIL_MEASUREMENTS,
                                                   seed=0)).to(device).eval()
            model = jepa.rollout
            if args.guardrails:
                from agent.guardrails import GuardrailSet

                rails = GuardrailSet(GUARDRAILS, jepa.readout, jepa.readout_keys)
            params = sum(p.numel() for p in jepa.parameters())  # whole world model, target encoder included
        else:
            model = MLPDynamics(latent, args.action_dim, hidden, layers).to(device)
            model.requires_grad_(True)
            params = sum(p.numel() for p in model.parameters())
        results["models"][model_name] = {"latent": latent, "hidden": hidden, "layers": layers, "params": params}
        z0, goal = torch.randn(latent, device=device), torch.randn(latent, device=device)
        objective = goal_objective(goal)
        for name in args.planners:
            for horizon in args.horizons:
                for constraint in (None, rails) if rails is not None else (None,):
                    row = bench_cell(name, model, z0, objective, horizon, args, device, constraint)
                    row = {"model": model_name, "params": params, "planner": name, "horizon": horizon,
                           "guardrails": constraint is not None, **row}
                    results["rows"].append(row)
                    label = name + ("+g" if constraint is not None else "")
                    print(
                        f"{model_name:<14}{params:>10,}  {label:<9}{horizon:>3}{row['median_ms']:>9.1f}"
                        f"{row['p95_ms']:>9.1f}{row['floor_ms']:>9.1f}{row['overhead_ms']:>10.1f}",
                        flush=True,
                    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
