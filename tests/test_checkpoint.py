import json
import pickle

import numpy as np
import pytest
import torch

from agent.checkpoint import checkpoint_dir, latest_checkpoint, load_checkpoint, save_checkpoint
from agent.memory import EpisodeReplay


def tensors():
    g = torch.Generator().manual_seed(0)
    return {"encoder.0.weight": torch.randn(4, 3, generator=g), "encoder.0.bias": torch.randn(4, generator=g),
            "step": torch.tensor([7], dtype=torch.int64), "t": torch.randn(3, 4, generator=g).T}  # non-contiguous


CONFIG = {"launch": {"name": "x", "training": {"steps": 5}}, "step": 7, "lr": 1e-3}


def test_round_trip(tmp_path):
    path = save_checkpoint(tmp_path / "run" / "step_00000007", tensors(), CONFIG, kind="agent")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "weights.safetensors"]
    meta = json.loads((path / "config.json").read_text())
    assert (meta["format"], meta["version"], meta["kind"]) == ("oda-checkpoint", 1, "agent")
    loaded, config = load_checkpoint(path, kind="agent")
    assert config == CONFIG
    expected = tensors()
    assert set(loaded) == set(expected)
    for name, value in expected.items():
        assert torch.equal(loaded[name], value), name


def test_numpy_replay_state_round_trip(tmp_path):
    buf = EpisodeReplay(50, (4, 4, 3), np.uint8, 2, {"xy": 2})
    rng = np.random.default_rng(0)
    for steps in (6, 9):
        buf.add_episode(rng.integers(0, 256, (steps + 1, 4, 4, 3), dtype=np.uint8),
                        rng.uniform(-1, 1, (steps, 2)).astype(np.float32), {"xy": rng.normal(size=(steps + 1, 2))})
    state = {f"replay/{k}": v for k, v in buf.state_dict().items()}
    loaded, _ = load_checkpoint(save_checkpoint(tmp_path / "c", state, {}, kind="replay"), kind="replay")
    assert loaded["replay/obs"].dtype == torch.uint8
    other = EpisodeReplay(50, (4, 4, 3), np.uint8, 2, {"xy": 2})
    other.load_state_dict({k.removeprefix("replay/"): v for k, v in loaded.items()})
    a, b = buf.sample(8, 5, np.random.default_rng(1)), other.sample(8, 5, np.random.default_rng(1))
    np.testing.assert_array_equal(a["obs"], b["obs"])
    np.testing.assert_array_equal(a["measurements"]["xy"], b["measurements"]["xy"])


def test_failed_save_keeps_the_old_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "ckpt", tensors(), CONFIG, kind="agent")
    shared = torch.zeros(8)
    with pytest.raises(RuntimeError, match="share memory"):  # safetensors refuses mid-save
        save_checkpoint(path, {"a": shared, "b": shared[:4]}, {"new": True}, kind="agent")
    with pytest.raises(ValueError, match="'bad'"):
        save_checkpoint(path, {"ok": torch.zeros(1), "bad": [1, 2]}, {"new": True}, kind="agent")
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(path, tensors(), {"obj": object()}, kind="agent")
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temp dir left behind
    loaded, config = load_checkpoint(path, kind="agent")
    assert config == CONFIG and torch.equal(loaded["encoder.0.weight"], tensors()["encoder.0.weight"])
    # a successful save replaces it completely
    save_checkpoint(path, {"w": torch.ones(2)}, {"new": True}, kind="agent")
    loaded, config = load_checkpoint(path, kind="agent")
    assert config == {"new": True} and list(loaded) == ["w"]
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_missing_and_corrupt(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_checkpoint(tmp_path / "nowhere", kind="agent")
    path = save_checkpoint(tmp_path / "c", tensors(), CONFIG, kind="agent")
    weights = (path / "weights.safetensors").read_bytes()
    (path / "weights.safetensors").write_bytes(weights[:40])
    with pytest.raises(ValueError, match="corrupt checkpoint"):
        load_checkpoint(path, kind="agent")
    (path / "weights.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="weights.safetensors"):
        load_checkpoint(path, kind="agent")
    (path / "weights.safetensors").write_bytes(weights)
    (path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt checkpoint .*config.json"):
        load_checkpoint(path, kind="agent")


def test_foreign_checkpoints_refused(tmp_path):
    path = save_checkpoint(tmp_path / "c", tensors(), CONFIG, kind="agent")
    with pytest.raises(ValueError, match="foreign checkpoint kind .*'agent', expected 'world_model'"):
        load_checkpoint(path, kind="world_model")
    (path / "config.json").write_text(json.dumps({"architectures": ["Bert"], "model_type": "bert"}))
    with pytest.raises(ValueError, match="not an oda checkpoint: .* format None"):
        load_checkpoint(path, kind="agent")
    (path / "config.json").write_text(json.dumps({"format": "oda-checkpoint", "version": 99, "kind": "agent"}))
    with pytest.raises(ValueError, match="foreign checkpoint version .*99"):
        load_checkpoint(path, kind="agent")


class _Trap:
    """Unpickling this creates a marker file: proof the loader ran pickle."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_is_never_unpickled(tmp_path):
    path = save_checkpoint(tmp_path / "c", tensors(), CONFIG, kind="agent")
    marker = tmp_path / "unpickled"
    (path / "weights.safetensors").write_bytes(pickle.dumps({"w": _Trap(marker)}))
    with pytest.raises(ValueError, match="corrupt checkpoint"):
        load_checkpoint(path, kind="agent")
    assert not marker.exists()
    torch.save({"w": torch.zeros(2)}, path / "weights.safetensors")  # torch's zip+pickle format
    with pytest.raises(ValueError, match="corrupt checkpoint"):
        load_checkpoint(path, kind="agent")


def test_latest_checkpoint(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    for step in (5, 120, 40):
        save_checkpoint(checkpoint_dir(tmp_path, step), {"s": torch.tensor([step])}, {}, kind="agent")
    (tmp_path / "step_00000999").mkdir()  # incomplete: ignored
    (tmp_path / ".step_00005000.tmp-x").mkdir()
    assert latest_checkpoint(tmp_path) == tmp_path / "step_00000120"


def test_replace_without_renameat2(tmp_path, monkeypatch):
    """The portable fallback (no atomic exchange, e.g. macOS) also replaces completely and cleans up."""
    import agent.checkpoint as ckpt

    monkeypatch.setattr(ckpt, "_exchange", lambda a, b: False)
    path = save_checkpoint(tmp_path / "c", tensors(), CONFIG, kind="agent")
    save_checkpoint(path, {"w": torch.ones(3)}, {"v": 2}, kind="agent")
    loaded, config = load_checkpoint(path, kind="agent")
    assert config == {"v": 2} and torch.equal(loaded["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["c"]
