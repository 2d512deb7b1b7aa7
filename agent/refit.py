"""Train a fresh world model on the experience a checkpoint holds (a model change measured on fixed data).

    python -m agent.refit CHECKPOINT RUN_DIR [key=value ...] [--updates N] [--threads T]

The checkpoint's launch config with the overrides (e.g. ``world_model.grounding_weight=10``) builds a new
model, which takes N updates (default: as many as the checkpoint's model took) on the checkpoint's replay,
drawn and weighted as ``oda train`` draws them. It is saved as ``RUN_DIR/step_<the checkpoint's step>``
with that replay, so ``oda eval`` runs it as any trained agent (its landmarks come from the same
experience). No env step is taken: two models refit from one replay differ by the change alone, not by
the different experience a new training run would also collect. The run is seeded by the launch
config's ``seed``, so a refit is repeatable on CPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from agent.checkpoint import checkpoint_dir, checkpoint_or_latest, load_checkpoint
from agent.launch import LaunchConfig, apply_override, parse_overrides
from agent.snapshot import KIND, load_replay, save_training_state
from agent.trainer import Trainer


def refit(checkpoint: str | Path, run_dir: str | Path, overrides: list[str] | None = None,
          updates: int | None = None, progress: bool = True) -> Path:
    """A new model (the checkpoint's launch config + ``overrides``) trained ``updates`` steps on the
    checkpoint's replay, saved under ``run_dir``; returns the saved checkpoint's directory."""
    path = checkpoint_or_latest(checkpoint)
    _, config = load_checkpoint(path, kind=KIND)
    data = config["launch"]
    for key, value in parse_overrides([*(overrides or []), f"run_dir={run_dir}"]):
        if key == "env" or key.startswith("env."):
            raise ValueError(f"override {key!r}: a refit keeps the checkpoint's env (its replay is that env's)")
        apply_override(data, key, value)
    cfg = LaunchConfig.from_dict(data, source="refit overrides")
    count = config["trainer"]["updates"] if updates is None else int(updates)
    if count <= 0:
        raise ValueError(f"refit needs a positive number of updates, got {count}")
    trainer = Trainer(cfg, progress=False)
    replay = load_replay(path)
    if replay.obs_shape != trainer.replay.obs_shape:
        raise ValueError(f"{path}: its replay's observations are {replay.obs_shape}, the model built from the "
                         f"overrides takes {trainer.replay.obs_shape}")
    trainer.replay = replay
    for _ in tqdm(range(count), disable=not progress, desc="refit"):
        trainer.update()
    trainer.step, trainer.episode = config["trainer"]["step"], config["trainer"]["episode"]
    return save_training_state(trainer, checkpoint_dir(cfg.run_dir, trainer.step))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agent.refit", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("run_dir", help="where the refit model is saved (as run_dir/step_<the checkpoint's step>)")
    p.add_argument("overrides", nargs="*", help="key=value, as for oda train (e.g. world_model.grounding_weight=10)")
    p.add_argument("--updates", type=int, default=None, help="default: as many as the checkpoint's model took")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        saved = refit(args.checkpoint, args.run_dir, args.overrides, args.updates, progress=not args.quiet)
    except (ValueError, FileNotFoundError) as exc:
        print(f"refit: {exc}", file=sys.stderr)
        return 2
    print(saved)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
