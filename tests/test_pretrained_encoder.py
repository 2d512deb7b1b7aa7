"""A pretrained image backbone on disk as a frozen encoder (issue 7): loaded from safetensors only,
never trained, shared by the online and target encoders, kept out of checkpoints, and pinned to the
weights a checkpoint was trained with. The backbone is a tiny randomly initialised DINOv2 saved with
``save_pretrained``: the same files and loading path as a real one, small enough for the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from agent.cli import main
from agent.snapshot import load_agent
from world_models import JEPAWorldModel, WorldModelConfig

transformers = pytest.importorskip("transformers")
LAUNCH = Path(__file__).parent.parent / "launch" / "pointmaze-pixels.yaml"


def save_backbone(folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    config = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, patch_size=8, image_size=32)
    transformers.Dinov2Model(config).save_pretrained(folder)
    return folder


def model_for(folder: Path, **kw) -> JEPAWorldModel:
    cfg = WorldModelConfig(obs_dim=2 * 32 * 32 * 3, action_dim=2, latent_dim=8, hidden_dim=32, encoder="pretrained",
                           obs_shape=[2, 32, 32, 3], pretrained_path=str(folder), train_horizon=2, seed=0, **kw)
    cfg.validate()
    return JEPAWorldModel(cfg)


def test_the_backbone_is_frozen_shared_and_not_a_parameter(tmp_path):
    model = model_for(save_backbone(tmp_path / "dino"))
    backbone = model.encoder.backbone
    assert model.target_encoder.backbone is backbone  # one copy for online and target
    assert not any(name.startswith("backbone") or "embeddings" in name for name in model.state_dict())
    assert len(model.cfg.pretrained_sha256) == 64
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    head = [p.clone() for p in model.encoder.head.parameters()]
    frames = torch.randint(0, 256, (4, 3, 2, 32, 32, 3), dtype=torch.uint8)
    opt = model.make_optimizer()
    model.train_step(opt, frames.float(), torch.rand(4, 2, 2) * 2 - 1, diagnostics=False)
    assert all(torch.equal(v, backbone.state_dict()[k]) for k, v in before.items())
    assert any(not torch.equal(a, b) for a, b in zip(head, model.encoder.head.parameters(), strict=True))
    assert not backbone.training  # model.train() does not reach it
    model.eval()
    z = model.encode(frames[:, 0])
    assert z.shape == (4, 8) and torch.isfinite(z).all()


def test_pickled_weights_other_weights_and_missing_folders_are_refused(tmp_path):
    folder = save_backbone(tmp_path / "dino")
    with pytest.raises(ValueError, match="not the ones this model was trained with"):
        model_for(folder, pretrained_sha256="0" * 64)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((folder / "config.json").read_text())
    torch.save({"w": torch.zeros(1)}, pickled / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pickled weights are never loaded"):
        model_for(pickled)
    with pytest.raises(ValueError, match="not a model folder"):
        model_for(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="needs pixel observations and a pretrained_path"):
        WorldModelConfig(obs_dim=4, action_dim=2, encoder="pretrained", obs_shape=[4]).validate()


def test_a_pixel_run_with_the_pretrained_encoder_through_the_cli(tmp_path, capsys):
    folder = save_backbone(tmp_path / "dino")
    run = tmp_path / "run"
    tiny = ["training.steps=100", "training.seed_steps=60", "training.batch_size=8", "training.eval_every=0",
            "training.checkpoint_every=0", "training.episode_steps=30", "env.image_size=32",
            "world_model.hidden_dim=32", "world_model.train_horizon=2", "world_model.encoder=pretrained",
            f"world_model.pretrained_path={folder}", "planner.params.samples=16", "planner.params.elites=4",
            "planner.params.horizon=3", "planner.params.iterations=1"]
    assert main(["train", str(LAUNCH), *tiny, f"run_dir={run}", "--quiet"]) == 0
    checkpoint = next(run.glob("step_*"))
    cfg, model = load_agent(checkpoint, torch.device("cpu"))
    assert model.cfg.encoder == "pretrained" and model.cfg.pretrained_sha256
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "1", "--json"]) == 0
    save_backbone(folder, seed=1)  # the user's folder now holds other weights
    with pytest.raises(ValueError, match="not the ones this model was trained with"):
        load_agent(checkpoint, torch.device("cpu"))
