"""Guardrails on a trained agent through the CLI: chosen at evaluation time, drawn by `oda record`, soft or hard."""

import json

import numpy as np
import pytest
import torch

from agent.build import make_actor, make_env
from agent.cli import main
from agent.launch import load_launch
from agent.snapshot import load_agent


def test_guardrails_set_at_evaluation_time_report_confusion_and_fallbacks(trained_run, capsys):
    rail = "guardrails=[{type: keep_out, key: agent_xy, center: [0.0, 0.0], radius: 0.5}]"
    assert main(["eval", str(trained_run), rail, "--episodes", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    confusion = result["confusion"]
    assert sum(confusion.values()) == result["episode_len_mean"]  # one prediction per executed step
    assert 0 <= result["fallbacks"] <= result["episode_len_mean"]
    assert main(["eval", str(trained_run), "--episodes", "1"]) == 0
    assert "confusion" not in capsys.readouterr().out  # no guardrails, no confusion
    assert main(["eval", str(trained_run), "world_model.latent_dim=4", "--episodes", "1"]) == 2
    assert "at evaluation only guardrails" in capsys.readouterr().err
    assert main(["eval", str(trained_run), rail, "--episodes", "1", "--calibrate", "1", "--json"]) == 0
    bound = json.loads(capsys.readouterr().out)["readout_error_bound"]["agent_xy"]
    assert len(bound) == 4 and all(b > 0 for b in bound)  # the tiny run's horizon is 4
    assert main(["eval", str(trained_run), rail, "--episodes", "1", "--calibrate", "1", "--calibrate-near", "0.3",
                 "--json"]) == 0
    near = json.loads(capsys.readouterr().out)
    assert near["calibration_near"] == 0.3 and len(near["calibration_samples"]["agent_xy"]) == 4
    assert main(["eval", str(trained_run), rail, "guardrail_horizon=2", "--episodes", "1", "--calibrate", "1",
                 "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["readout_error_bound"]["agent_xy"]) == 2  # the steps checked
    assert main(["eval", str(trained_run), rail, "guardrail_fallback=least_violation", "--episodes", "2",
                 "--per-episode", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [e["seed"] for e in listed["per_episode"]] == [1_000_000, 1_000_001]
    assert sum(e["fallbacks"] for e in listed["per_episode"]) == listed["fallbacks"]
    assert sum(e["recoveries"] for e in listed["per_episode"]) == listed["recoveries"] <= listed["fallbacks"]
    assert main(["eval", str(trained_run), rail, "guardrail_fallback=stop", "--episodes", "1"]) == 2
    assert "guardrail_fallback" in capsys.readouterr().err
    assert main(["eval", str(trained_run), rail, "--episodes", "1", "--calibrate", "1", "--calibrate-near", "-1"]) == 2
    assert "near must be a finite distance" in capsys.readouterr().err
    assert main(["eval", str(trained_run), "--episodes", "1", "--calibrate", "1"]) == 2
    assert "the actor has none" in capsys.readouterr().err
    assert main(["eval", str(trained_run), "guardrails=[{type: keep_out, key: ee_pos, center: [0], radius: 1}]",
                 "--episodes", "1"]) == 2
    assert "no readout head" in capsys.readouterr().err


def test_record_draws_guardrail_zones_and_marks_violations(trained_run, tmp_path, demo_launch, tiny):
    from agent.record import red_border, zone_markers

    cfg, model = load_agent(trained_run / "step_00000240", torch.device("cpu"))
    rails = ("guardrails=[{type: keep_out, key: agent_xy, center: [0.5, 0.5], radius: 0.3, margin: 0.1},"
             " {type: action_rate, limit: 1.0}, {type: keep_out_box, key: agent_xy, low: [-1, 0], high: [0, 0.5],"
             " margin: 0.1}]")
    cfg = load_launch(demo_launch, [*tiny, rails])
    actor = make_actor(cfg, model, 2, torch.device("cpu"))
    (xyz, rgba, size), box = zone_markers(actor)  # the disc and the box; action limits have no place in the scene
    np.testing.assert_allclose(xyz, [0.5, 0.5, 0.0])
    assert size == pytest.approx((0.4, 0.002)) and rgba[3] < 1
    np.testing.assert_allclose(box[0], [-0.5, 0.25, 0.0])
    assert box[2] == pytest.approx((0.6, 0.35, 0.002))  # half-sizes, the margin added on every side
    base = make_env(cfg).unwrapped
    base.reset(seed=0)
    bare, drawn = base.render_frame(64, 64), base.render_frame(64, 64, [box])
    assert (bare != drawn).any(axis=-1).mean() > 0.01  # the 1.2 x 0.7 m box shows on the floor (1.9%)
    frame = np.zeros((16, 16, 3), np.uint8)
    bordered = red_border(frame)
    assert (bordered[0] == [230, 20, 20]).all() and (bordered[8, 8] == 0).all() and (frame == 0).all()
    out = tmp_path / "guarded.mp4"
    rail = "guardrails=[{type: keep_out, key: agent_xy, center: [0.5, 0.5], radius: 0.3}]"
    assert main(["record", str(trained_run), rail, "--episodes", "1", "--out", str(out), "--size", "64"]) == 0
    assert out.stat().st_size > 1000


def test_soft_guardrail_mode_is_a_cost_term_not_a_constraint(trained_run, capsys, demo_launch, tiny):
    cfg, model = load_agent(trained_run / "step_00000240", torch.device("cpu"))
    rail = "guardrails=[{type: keep_out, key: agent_xy, center: [0.5, 0.5], radius: 0.3}]"
    soft = load_launch(demo_launch, [*tiny, rail, "guardrail_mode=soft"])
    actor = make_actor(soft, model, 2, torch.device("cpu"))
    assert actor.guardrails is None and actor.cost.weights["guardrail_penalty"] == 10.0
    assert actor.cost.penalty is not None
    hard = make_actor(load_launch(demo_launch, [*tiny, rail]), model, 2, torch.device("cpu"))
    assert hard.guardrails is not None and "guardrail_penalty" not in hard.cost.weights
    with pytest.raises(ValueError, match="need guardrails"):
        make_actor(load_launch(demo_launch, [*tiny, "guardrail_mode=soft"]), model, 2, torch.device("cpu"))
    assert main(["eval", str(trained_run), rail, "guardrail_mode=soft", "--episodes", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert "confusion" not in result and result["violations_total"] >= 0
