"""Perception from pixels (issue 7): the conv encoder, its random-shift augmentation, frame
stacks, image goals, and a tiny pixel run through the CLI (train, eval, record)."""

from __future__ import annotations

import json
from pathlib import Path

import imageio
import numpy as np
import pytest
import torch

from agent.actor import episode_goal
from agent.build import make_actor, make_env
from agent.cli import main
from agent.snapshot import load_agent
from world_models import JEPAWorldModel, WorldModelConfig
from world_models.pixel_encoder import random_shift

LAUNCH = Path(__file__).parent.parent / "launch" / "pointmaze-pixels.yaml"
TINY = ["training.steps=160", "training.seed_steps=80", "training.batch_size=8", "training.eval_every=160",
        "training.eval_episodes=1", "training.checkpoint_every=0", "training.episode_steps=40", "env.image_size=32",
        "world_model.hidden_dim=32", "world_model.conv_channels=8", "world_model.train_horizon=3",
        "planner.params.samples=32", "planner.params.elites=8", "planner.params.horizon=4",
        "planner.params.iterations=2"]


def pixel_model(shape: list[int], **kw) -> JEPAWorldModel:
    cfg = WorldModelConfig(obs_dim=int(np.prod(shape)), action_dim=2, latent_dim=8, hidden_dim=32, encoder="conv",
                           obs_shape=shape, conv_channels=8, seed=0, **kw)
    return JEPAWorldModel(cfg)


def test_random_shift_moves_each_image_by_at_most_pad_pixels():
    torch.manual_seed(0)
    x = torch.rand(6, 3, 12, 12)
    out = random_shift(x, 2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate")
    for n in range(6):  # every output is one of the 25 crops of its own padded image
        assert any(torch.equal(out[n], padded[n, :, dy:dy + 12, dx:dx + 12]) for dy in range(5) for dx in range(5))
    assert not all(torch.equal(out[n], x[n]) for n in range(6))


def test_conv_encoder_reads_frames_and_stacks_and_augments_only_while_training():
    frames = torch.randint(0, 256, (4, 5, 32, 32, 3), dtype=torch.uint8)  # [B, T, H, W, 3]
    model = pixel_model([32, 32, 3])
    model.eval()
    z = model.encode(frames)
    assert z.shape == (4, 5, 8)
    torch.testing.assert_close(z, model.encode(frames))  # evaluation: no augmentation
    model.train()
    assert not torch.equal(model.encode(frames), z)  # training: random shifts
    stacked = pixel_model([2, 32, 32, 3]).eval()
    assert stacked.encode(torch.randint(0, 256, (3, 2, 32, 32, 3), dtype=torch.uint8)).shape == (3, 8)
    with pytest.raises(ValueError, match="trailing shape"):
        stacked.encode(frames)
    with pytest.raises(ValueError, match="obs_shape must be"):
        WorldModelConfig(obs_dim=10, action_dim=2, encoder="conv", obs_shape=[10]).validate()
    # the JEPA loss runs on frames as on state vectors
    loss, logs = model.loss(frames.float(), torch.rand(4, 4, 2) * 2 - 1, diagnostics=False)
    assert torch.isfinite(loss) and logs["loss/pred"] >= 0


def test_a_tiny_pixel_run_trains_evaluates_and_records_through_the_cli(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(LAUNCH), *TINY, f"run_dir={run}", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 1
    out = tmp_path / "pixels.mp4"
    assert main(["record", str(run), "--episodes", "1", "--out", str(out), "--size", "64"]) == 0
    assert json.loads(capsys.readouterr().out)["frames"] == 41
    with imageio.get_reader(out) as reader:
        frame = next(iter(reader.iter_data()))
    assert frame.shape[:2] == (64, 128)  # the camera frame, then the goal image beside it

    cfg, model = load_agent(next(run.glob("step_*")), torch.device("cpu"))
    assert model.cfg.encoder == "conv" and model.cfg.obs_shape == [2, 32, 32, 3]
    env = make_env(cfg)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2, 32, 32, 3) and obs.dtype == np.uint8  # the last two frames, stored as uint8
    actor = make_actor(cfg, model, 2, torch.device("cpu"), env=env)
    goal = episode_goal(env, actor)
    assert goal.shape == obs.shape and np.array_equal(goal[0], goal[1])  # an image goal, held still
