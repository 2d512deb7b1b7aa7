"""Tools that study a trained checkpoint: a model refit on its own replay, the model's position errors."""

import json

import numpy as np
import pytest
import torch

from agent.cli import main
from agent.model_audit import audit
from agent.model_audit import main as audit_main
from agent.refit import main as refit_main
from agent.snapshot import load_agent, load_replay


def test_refit_trains_a_changed_model_on_the_checkpoints_own_replay(trained_run, tmp_path, capsys):
    """python -m agent.refit: a new model from the checkpoint's replay, saved where oda eval takes it."""
    source = trained_run / "step_00000240"
    runs = [tmp_path / "a", tmp_path / "b"]
    for run in runs:
        assert refit_main([str(source), str(run), "world_model.predictor_hidden=24", "--updates", "20",
                           "--quiet"]) == 0
    saved = runs[0] / "step_00000240"
    assert capsys.readouterr().out.split() == [str(saved), str(runs[1] / "step_00000240")]
    _, model = load_agent(saved, torch.device("cpu"))
    assert model.cfg.predictor_hidden == 24 and model.predictor.net[0].out_features == 24
    _, original = load_agent(source, torch.device("cpu"))
    assert not torch.equal(model.encoder.net[0].weight, original.encoder.net[0].weight)  # a fresh model
    replay, kept = load_replay(saved), load_replay(source)
    assert replay.num_steps == kept.num_steps == 240
    np.testing.assert_array_equal(replay.observations(), kept.observations())
    _, twin = load_agent(runs[1] / "step_00000240", torch.device("cpu"))  # seeded: the same refit twice
    for (name, a), (_, b) in zip(model.state_dict().items(), twin.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert main(["eval", str(saved), "--episodes", "1", "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 1
    for bad, named in ((["env.id=gym/Reacher-v5"], "env.id"), (["world_model.bogus=1"], "bogus")):
        assert refit_main([str(source), str(tmp_path / "c"), *bad, "--updates", "2", "--quiet"]) == 2
        assert named in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_model_audit_compares_imagined_and_real_positions_on_the_replay(trained_run, capsys):
    assert audit_main([str(trained_run), "--horizon", "3", "--samples", "200"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["checkpoint"].endswith("step_00000240") and report["windows"] == 200
    parts = [report[k] for k in ("pressed", "moved", "rest")]
    assert sum(p["windows"] for p in parts) == 200
    assert report["readout_error_mean"] > 0 and report["rollout_error_mean"] > 0
    for part, (low, high) in zip(parts, ((0.0, 0.1), (0.3, np.inf), (0.0, 0.3)), strict=True):
        if part["windows"]:
            assert low <= part["actual_move_mean"] <= high and part["predicted_move_mean"] >= 0
    assert audit(trained_run, horizon=3, samples=200) == report  # the same draw of windows: the same figures
    with pytest.raises(ValueError, match="ee_pos"):
        audit(trained_run, key="ee_pos")
    with pytest.raises(ValueError, match="horizon"):
        audit(trained_run, horizon=0)
