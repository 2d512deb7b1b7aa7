"""What an agent checkpoint holds and how it is restored: world model, optimizer, replay,
counters and random states (safetensors + JSON through `agent.checkpoint`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from agent.checkpoint import load_checkpoint, save_checkpoint
from agent.launch import LaunchConfig
from agent.memory import EpisodeReplay
from world_models.config import WorldModelConfig
from world_models.jepa import JEPAWorldModel

if TYPE_CHECKING:
    from agent.trainer import Trainer

KIND = "agent"


def _split(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _restore_model(model: JEPAWorldModel, tensors: dict[str, torch.Tensor], path: Path | str) -> None:
    """Load the checkpoint's model tensors, refusing by name a set that this code's model does not have
    (a checkpoint from another version of the world model, e.g. before the Q critic)."""
    try:
        model.load_state_dict(_split(tensors, "model."))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ValueError(f"checkpoint {path} does not fit this version's world model (written by another "
                         f"version or with other world_model settings): {' '.join(first[:3])}") from exc


# Settings that older versions wrote and this one no longer has; a checkpoint that relied on them
# (e.g. a V critic with an imagined-rollout policy) fails on its tensors instead, by name.
RETIRED_SETTINGS = ("policy_horizon",)


def _world_model_config(config: dict[str, Any], path: Path | str) -> WorldModelConfig:
    known = {f.name for f in dataclasses.fields(WorldModelConfig)}
    settings = {k: v for k, v in config["world_model"].items() if k not in RETIRED_SETTINGS}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(f"checkpoint {path} was written by another version: world_model setting(s) {unknown} "
                         f"are unknown here")
    return WorldModelConfig(**settings)


def save_training_state(trainer: Trainer, path: Path) -> Path:
    tensors: dict[str, Any] = {f"model.{k}": v.detach().cpu() for k, v in trainer.model.state_dict().items()}
    optim = trainer.optim.state_dict()
    for index, state in optim["state"].items():
        for name, value in state.items():
            tensors[f"optim.{index}.{name}"] = torch.as_tensor(value).cpu()
    for k, v in trainer.replay.state_dict().items():
        tensors[f"replay.{k}"] = torch.from_numpy(np.ascontiguousarray(v))
    tensors["rng.torch"] = torch.get_rng_state()
    config = {
        "launch": trainer.cfg.to_dict(),
        "world_model": dataclasses.asdict(trainer.wm_cfg),
        "optimizer_param_groups": optim["param_groups"],
        "trainer": {"step": trainer.step, "episode": trainer.episode, "updates": trainer.updates,
                    "numpy_rng": trainer.rng.bit_generator.state, "history": trainer.history,
                    "update_rng": trainer.update_rng.bit_generator.state,  # the same stream unless overlap_update
                    "explore": {"action": trainer.explore._action.tolist(), "left": trainer.explore._left}},
    }
    return save_checkpoint(path, tensors, config, kind=KIND)


def load_training_state(trainer: Trainer, path: Path) -> None:
    tensors, config = load_checkpoint(path, kind=KIND)
    if config["launch"]["env"]["id"] != trainer.cfg.env.id:
        raise ValueError(f"checkpoint {path} is for env {config['launch']['env']['id']!r}, "
                         f"not {trainer.cfg.env.id!r}")
    _restore_model(trainer.model, tensors, path)
    optim_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in _split(tensors, "optim.").items():
        index, name = key.split(".", 1)
        optim_state.setdefault(int(index), {})[name] = value
    trainer.optim.load_state_dict({"state": optim_state, "param_groups": config["optimizer_param_groups"]})
    replay_state = {k: v.numpy() for k, v in _split(tensors, "replay.").items()}
    # A resume with a larger training.steps grows the buffer to the new budget, so that nothing saved is
    # evicted (it kept the saved size until stop 67: a giant-layout PointMaze run resumed from 21k to 40k kept
    # only its last 23k steps); one with a smaller budget keeps the saved size.
    capacity = max(int(replay_state["capacity"].reshape(-1)[0]), trainer.replay.capacity)
    if capacity != trainer.replay.capacity:
        replay = trainer.replay
        trainer.replay = type(replay)(capacity, replay.obs_shape, replay.obs_dtype, replay.action_dim,
                                      replay.measurement_dims)
    trainer.replay.load_state_dict(replay_state)
    torch.set_rng_state(tensors["rng.torch"])
    state = config["trainer"]
    trainer.step, trainer.episode, trainer.updates = state["step"], state["episode"], state["updates"]
    trainer.rng.bit_generator.state = state["numpy_rng"]
    if trainer.update_rng is not trainer.rng and "update_rng" in state:  # older checkpoints: a fresh stream
        trainer.update_rng.bit_generator.state = state["update_rng"]
    trainer.history = state["history"]
    trainer.explore._action = np.asarray(state["explore"]["action"], dtype=np.float32)
    trainer.explore._left = state["explore"]["left"]


def load_agent(path: str | Path, device: torch.device) -> tuple[LaunchConfig, JEPAWorldModel]:
    """The launch config and the trained world model of a checkpoint (for eval / record)."""
    tensors, config = load_checkpoint(path, kind=KIND)
    cfg = LaunchConfig.from_dict(config["launch"])
    model = JEPAWorldModel(_world_model_config(config, path)).to(device)
    _restore_model(model, tensors, path)
    model.eval()
    return cfg, model


def load_replay(path: str | Path) -> EpisodeReplay:
    """The replay stored in a checkpoint, as a buffer just large enough for it (the hierarchical
    planner's landmarks come from it)."""
    tensors, _ = load_checkpoint(path, kind=KIND)
    state = _split(tensors, "replay.")
    if "obs" not in state or "actions" not in state:
        raise ValueError(f"checkpoint {path} holds no replay to draw landmarks from")
    measurements = {k[len("meas/"):]: v.shape[-1] for k, v in state.items() if k.startswith("meas/")}
    replay = EpisodeReplay(int(state["capacity"].reshape(-1)[0]), tuple(state["obs"].shape[1:]),
                           state["obs"].numpy().dtype, state["actions"].shape[-1], measurements)
    replay.load_state_dict(state)
    return replay
