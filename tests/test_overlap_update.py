"""`training.overlap_update`: the model update of each step runs in a second thread beside the next plan."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from agent.checkpoint import latest_checkpoint
from agent.launch import load_launch
from agent.trainer import Trainer


def _weights(run) -> dict[str, torch.Tensor]:
    tensors = load_file(latest_checkpoint(run) / "weights.safetensors")
    return {k: v for k, v in tensors.items() if k.startswith("model.")}


def test_overlapped_updates_repeat_exactly_and_hand_their_weights_to_the_actor(tmp_path, demo_launch, tiny,
                                                                                trained_run):
    for name in ("a", "b"):
        cfg = load_launch(demo_launch, [*tiny, "training.overlap_update=true", f"run_dir={tmp_path / name}"])
        trainer = Trainer(cfg, progress=False)
        assert trainer.acting_model is not trainer.model and not trainer.acting_model.training
        trainer.train()
        # training ends at an episode boundary: no update in flight, the actor holds the trained weights
        assert trainer._pending is None and trainer._pool is None
        acting = trainer.acting_model.state_dict()
        for key, value in trainer.model.state_dict().items():
            assert torch.equal(acting[key], value), key
        assert trainer.timing_summary()["steps_timed"] == 120 and trainer.updates == 240
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # thread timing changes nothing
    plain = _weights(trained_run)  # the same launch without the overlap: other replay draws, other weights
    assert plain.keys() == a.keys() and any(not torch.equal(plain[k], a[k]) for k in a)

    # --resume restores the updates' own random stream
    run = tmp_path / "resumed"
    shutil.copytree(tmp_path / "a", run)
    shutil.rmtree(run / "step_00000240")
    saved = json.loads((run / "step_00000120" / "config.json").read_text())["trainer"]["update_rng"]
    cfg = load_launch(demo_launch, [*tiny, "training.overlap_update=true", f"run_dir={run}"])
    resumed = Trainer(cfg, resume=True, progress=False)
    assert resumed.update_rng.bit_generator.state == saved
    assert saved != np.random.default_rng([cfg.seed, 1]).bit_generator.state  # the pretraining drew from it
    acting = resumed.acting_model.state_dict()  # and the actor plans with the restored weights
    assert all(torch.equal(acting[k], v) for k, v in resumed.model.state_dict().items())
    assert any(not torch.equal(acting[k], v) for k, v in Trainer(cfg, progress=False).model.state_dict().items())


def test_an_error_in_the_update_thread_is_raised_by_train(tmp_path, demo_launch, tiny):
    cfg = load_launch(demo_launch, [*tiny, "training.overlap_update=true", f"run_dir={tmp_path / 'run'}"])
    trainer = Trainer(cfg, progress=False)
    calls = {"n": 0}
    update = trainer.update

    def failing() -> dict[str, float]:
        calls["n"] += 1
        if calls["n"] > 125:  # after the pretraining's 120, in the second thread
            raise RuntimeError("update failed in its thread")
        return update()

    trainer.update = failing
    with pytest.raises(RuntimeError, match="update failed in its thread"):
        trainer.train()
