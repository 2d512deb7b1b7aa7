"""How far a trained world model's imagined positions are from where the agent really went (a benchmark).

    python -m agent.model_audit CHECKPOINT [--horizon 10] [--samples 4000] [--key agent_xy] [--seed 0]

Windows of ``horizon`` actions are drawn from the checkpoint's own replay. The model encodes each
window's first observation, rolls out the actions really taken, and the readout head of ``key`` reads a
position from every latent. Reported (metres for the mazes' ``agent_xy``): the readout's error on the
encoded first observation; the error at the end of the rollout; and, split by what the agent really did,
the displacement the model predicted against the one measured. ``pressed`` windows are those where the
mean action is strong (norm > 0.5) and the agent moved less than 0.1: a ball pushed into a wall. A model
that predicts motion there plans through walls. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agent.checkpoint import checkpoint_or_latest
from agent.snapshot import load_agent, load_replay

PRESSED_ACTION, PRESSED_MOVE, MOVED = 0.5, 0.1, 0.3


def _summary(mask: np.ndarray, err: np.ndarray, predicted: np.ndarray, actual: np.ndarray) -> dict[str, Any]:
    if not mask.any():
        return {"windows": 0}
    return {"windows": int(mask.sum()), "error_mean": float(err[mask].mean()),
            "error_median": float(np.median(err[mask])), "predicted_move_mean": float(predicted[mask].mean()),
            "actual_move_mean": float(actual[mask].mean())}


@torch.no_grad()
def audit(checkpoint: str | Path, horizon: int = 10, samples: int = 4000, key: str = "agent_xy",
          seed: int = 0) -> dict[str, Any]:
    """The position errors described in the module docstring, on the checkpoint's replay, on the CPU."""
    if horizon < 1 or samples < 1:
        raise ValueError(f"horizon and samples must be >= 1, got {horizon} and {samples}")
    path = checkpoint_or_latest(checkpoint)
    _, model = load_agent(path, torch.device("cpu"))
    replay = load_replay(path)
    if key not in replay.measurement_dims or key not in model.readout_keys:
        raise ValueError(f"{path}: no measurement and readout {key!r} (the model reads {list(model.readout_keys)})")
    batch = replay.sample(samples, horizon, np.random.default_rng(seed))  # obs [N, H + 1], actions [N, H]
    obs = torch.as_tensor(batch["obs"], dtype=torch.float32)
    actions = torch.as_tensor(batch["actions"], dtype=torch.float32)
    true = torch.as_tensor(batch["measurements"][key], dtype=torch.float32)  # [N, H + 1, k]
    z0 = model.encode(obs[:, 0])
    start = model.readout(z0, [key])[key]
    end = model.readout(model.rollout(z0, actions)[:, -1], [key])[key]
    start_err = (start - true[:, 0]).norm(dim=-1).numpy()
    err = (end - true[:, -1]).norm(dim=-1).numpy()
    actual = (true[:, -1] - true[:, 0]).norm(dim=-1).numpy()
    predicted = (end - start).norm(dim=-1).numpy()
    strength = actions.mean(1).norm(dim=-1).numpy()
    pressed = (strength > PRESSED_ACTION) & (actual < PRESSED_MOVE)
    moved = actual > MOVED
    return {"checkpoint": str(path), "key": key, "horizon": horizon, "windows": int(len(err)),
            "readout_error_mean": float(start_err.mean()), "rollout_error_mean": float(err.mean()),
            "rollout_error_median": float(np.median(err)),
            "pressed": _summary(pressed, err, predicted, actual), "moved": _summary(moved, err, predicted, actual),
            "rest": _summary(~pressed & ~moved, err, predicted, actual)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agent.model_audit", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--horizon", type=int, default=10, help="steps rolled out from each window's first latent")
    p.add_argument("--samples", type=int, default=4000, help="windows drawn from the replay")
    p.add_argument("--key", default="agent_xy", help="the measurement (and readout) compared")
    p.add_argument("--seed", type=int, default=0, help="the draw of windows")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    print(json.dumps(audit(args.checkpoint, args.horizon, args.samples, args.key, args.seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
