"""Guardrails: exact violation amounts on hand-built trajectories, declarative parsing, the
constraint the planners receive."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from agent.guardrails import GUARDRAILS, GuardrailSet, make_guardrail


def _traj(*points):
    """One trajectory [1, H, 2] of positions."""
    return torch.tensor([points], dtype=torch.float32)


NO_ACTIONS = torch.zeros(1, 3, 2)


def test_keep_out_violation_is_the_depth_inside_the_disc_plus_margin():
    g = make_guardrail({"type": "keep_out", "key": "xy", "center": [0, 0], "radius": 1.0, "margin": 0.5})
    m = {"xy": _traj((2.0, 0.0), (1.25, 0.0), (0.0, 0.3))}
    torch.testing.assert_close(g.violation(m, NO_ACTIONS, None, {}), torch.tensor([[0.0, 0.25, 1.2]]))


def test_keep_out_box_violation_is_the_distance_to_the_nearest_face():
    g = make_guardrail({"type": "keep_out_box", "key": "xy", "low": [0, 0], "high": [2, 1], "margin": 0.1})
    m = {"xy": _traj((3.0, 0.5), (1.0, 0.5), (1.9, -0.05))}
    torch.testing.assert_close(g.violation(m, NO_ACTIONS, None, {}), torch.tensor([[0.0, 0.6, 0.05]]))


def test_speed_limit_applies_only_inside_the_zone():
    g = make_guardrail({"type": "speed_limit_in_zone", "speed_key": "speed", "position_key": "xy",
                        "center": [0, 0], "radius": 1.0, "limit": 0.5, "margin": 0.2, "speed_margin": 0.1})
    m = {"xy": _traj((0.0, 0.0), (1.1, 0.0), (1.3, 0.0)), "speed": torch.tensor([[[0.7], [0.9], [5.0]]])}
    # inside: 0.7 - 0.4; inside the margin: 0.9 - 0.4; outside radius + margin: nothing
    torch.testing.assert_close(g.violation(m, NO_ACTIONS, None, {}), torch.tensor([[0.3, 0.5, 0.0]]))


def test_bound_sums_the_excess_over_components():
    g = make_guardrail({"type": "bound", "key": "q", "low": [-1, -2], "high": 1.0})
    m = {"q": torch.tensor([[[0.0, 0.0], [1.5, -2.5], [-1.5, 3.0]]])}
    torch.testing.assert_close(g.violation(m, NO_ACTIONS, None, {}), torch.tensor([[0.0, 1.0, 2.5]]))


def test_readout_errors_widen_each_guardrail_per_predicted_step():
    m = {"xy": _traj((2.0, 0.0), (1.25, 0.0), (1.5, 0.0)), "speed": torch.tensor([[[0.45], [0.45], [0.45]]]),
         "q": torch.tensor([[[0.95], [0.95], [0.95]]])}
    err = {"xy": torch.tensor([0.0, 0.5]), "speed": torch.tensor([0.1, 0.0, 0.0]), "q": torch.tensor([0.1])}
    keep_out = make_guardrail({"type": "keep_out", "key": "xy", "center": [0, 0], "radius": 1.0})
    # step 3 reuses the last calibrated bound (0.5): 1.5 m from the centre counts as 1.0 m
    torch.testing.assert_close(keep_out.violation(m, NO_ACTIONS, None, err), torch.tensor([[0.0, 0.25, 0.0]]))
    zone = make_guardrail({"type": "speed_limit_in_zone", "speed_key": "speed", "position_key": "xy",
                           "center": [0, 0], "radius": 1.0, "limit": 0.5})
    torch.testing.assert_close(zone.violation(m, NO_ACTIONS, None, err), torch.tensor([[0.0, 0.0, 0.0]]))
    err["xy"] = torch.tensor([1.0])  # now every point may be inside; only step 1 may be too fast
    torch.testing.assert_close(zone.violation(m, NO_ACTIONS, None, err), torch.tensor([[0.05, 0.0, 0.0]]))
    bound = make_guardrail({"type": "bound", "key": "q", "high": 1.0})
    torch.testing.assert_close(bound.violation(m, NO_ACTIONS, None, err), torch.tensor([[0.05, 0.05, 0.05]]))


def test_action_bound_and_rate_from_the_last_executed_action():
    actions = torch.tensor([[[0.5, -1.0], [0.9, 0.0], [0.9, 0.2]]])
    bound = make_guardrail({"type": "action_bound", "limit": 0.8})
    torch.testing.assert_close(bound.violation({}, actions, None, {}), torch.tensor([[0.2, 0.1, 0.1]]))
    rate = make_guardrail({"type": "action_rate", "limit": 0.5})
    torch.testing.assert_close(rate.violation({}, actions, None, {}), torch.tensor([[0.0, 0.5, 0.0]]))
    last = torch.tensor([-0.5, -1.0])
    torch.testing.assert_close(rate.violation({}, actions, last, {}), torch.tensor([[0.5, 0.5, 0.0]]))


@pytest.mark.parametrize("spec, pattern", [
    ({"key": "xy"}, "'type' key"),
    ({"type": "fence"}, r"unknown guardrail type 'fence'.*keep_out"),
    ({"type": "keep_out", "key": "xy", "center": [0, 0], "radius": 1, "radius_m": 2},
     r"unknown keep_out field.*radius_m"),
    ({"type": "keep_out", "center": [0, 0], "radius": 1}, "keep_out.key"),
    ({"type": "keep_out", "key": "xy", "center": "origin", "radius": 1}, "keep_out.center"),
    ({"type": "keep_out", "key": "xy", "center": [0, 0], "radius": -1}, "keep_out.radius"),
    ({"type": "keep_out", "key": "xy", "center": [0, 0]}, "keep_out.radius"),
    ({"type": "speed_limit_in_zone", "speed_key": "s", "position_key": "p", "center": [0], "radius": 1}, "limit"),
    ({"type": "keep_out", "key": "xy", "center": [0, 0], "radius": 1, "margin": float("nan")}, "margin"),
    ({"type": "keep_out_box", "key": "xy", "low": [0, 0], "high": [1]}, "keep_out_box.high"),
    ({"type": "keep_out_box", "key": "xy", "low": [0, 2], "high": [1, 1]}, "low < high"),
    ({"type": "bound", "key": "q"}, "low, high or both"),
    ({"type": "speed_limit_in_zone", "speed_key": "s", "center": [0, 0], "radius": 1, "limit": 1}, "position_key"),
])
def test_bad_guardrail_specs_name_the_problem(spec, pattern):
    with pytest.raises(ValueError, match=pattern):
        make_guardrail(spec)


def test_every_registered_type_round_trips_through_its_dict():
    specs = {"keep_out": {"key": "xy", "center": [1, 2], "radius": 0.5},
             "keep_out_box": {"key": "xy", "low": [0, 0], "high": [1, 1]},
             "speed_limit_in_zone": {"speed_key": "s", "position_key": "xy", "center": [0, 0], "radius": 1, "limit": 1},
             "bound": {"key": "q", "high": [1, 2]}, "action_bound": {"limit": 0.5}, "action_rate": {"limit": 0.3}}
    assert set(specs) == set(GUARDRAILS)
    for kind, fields in specs.items():
        g = make_guardrail({"type": kind, **fields})
        assert make_guardrail(g.to_dict()) == g


def test_guardrail_set_is_a_planner_constraint_over_readouts():
    readout = lambda z: {"xy": z[..., :2]}  # noqa: E731  (a latent whose first two dims are the position)
    rails = GuardrailSet([{"type": "keep_out", "key": "xy", "center": [0, 0], "radius": 1.0},
                          {"type": "action_bound", "limit": 0.5}], readout, ("xy",))
    z = torch.tensor([[[2.0, 0.0, 9.0], [0.5, 0.0, 9.0]], [[3.0, 0.0, 9.0], [3.0, 1.0, 9.0]]])
    actions = torch.tensor([[[0.0], [0.0]], [[0.9], [0.0]]])
    torch.testing.assert_close(rails.per_step(z, actions), torch.tensor([[0.0, 0.5], [0.4, 0.0]]))
    torch.testing.assert_close(rails(z, actions), torch.tensor([0.5, 0.4]))
    assert list(rails.per_guardrail(z, actions)) == ["0:keep_out", "1:action_bound"]
    with pytest.raises(ValueError, match=r"measurement\(s\) \['ee_pos'\] have no readout head.*\['xy'\]"):
        GuardrailSet([{"type": "keep_out", "key": "ee_pos", "center": [0, 0], "radius": 1}], readout, ("xy",))
    with pytest.raises(ValueError, match="at least one"):
        GuardrailSet([], readout, ("xy",))


@pytest.mark.parametrize("env_id, speed_key", [("oda/PointMaze-v0", "agent_speed"), ("oda/ArmReach-v0", "ee_speed"),
                                               ("oda/Push-v0", None)])
def test_task_safe_fallback_brings_the_robot_to_rest(env_id, speed_key):
    import envs

    env = envs.make(env_id, seed=0)
    obs, _ = env.reset(seed=0)
    for _ in range(10):
        obs, *_ = env.step(np.ones(env.action_space.shape, dtype=np.float32))
    speeds = []
    for _ in range(20):
        action = env.unwrapped.safe_action(obs)
        assert action.shape == env.action_space.shape and np.all(np.abs(action) <= 1.0)
        obs, _, _, _, info = env.step(action)
        if speed_key:
            speeds.append(float(info["measurements"][speed_key][0]))
    if speed_key:
        assert speeds[0] > 0.3 and speeds[-1] < 0.01 * speeds[0], speeds
    else:  # velocity-servoed pusher: the fallback is a zero velocity command
        np.testing.assert_array_equal(env.unwrapped.safe_action(obs), np.zeros(2, np.float32))


def test_region_distance_is_how_far_the_truth_lies_from_where_a_guardrail_can_be_violated():
    m = {"xy": _traj((3.0, 0.0), (0.5, 0.0), (4.0, 5.0)), "speed": torch.ones(1, 3, 1)}
    disc = make_guardrail({"type": "keep_out", "key": "xy", "center": [0, 0], "radius": 1.0, "margin": 0.5})
    torch.testing.assert_close(disc.region_distance(m), torch.tensor([[2.0, 0.0, math.hypot(4, 5) - 1]]))
    box = make_guardrail({"type": "keep_out_box", "key": "xy", "low": [0, -1], "high": [1, 1]})
    torch.testing.assert_close(box.region_distance(m), torch.tensor([[2.0, 0.0, 5.0]]))  # (3, 4) from the corner
    zone = make_guardrail({"type": "speed_limit_in_zone", "speed_key": "speed", "position_key": "xy",
                           "center": [3, 0], "radius": 0.5, "limit": 0.5})
    torch.testing.assert_close(zone.region_distance(m), torch.tensor([[0.0, 2.0, math.hypot(1, 5) - 0.5]]))
    assert make_guardrail({"type": "bound", "key": "speed", "high": 1.0}).region_distance(m) is None
    rails = GuardrailSet([disc.to_dict(), zone.to_dict()], readout=lambda z: {}, readout_keys=("xy", "speed"))
    near = rails.near(m, radius=1.0)
    assert near["xy"].tolist() == [[True, True, False]]  # near the zone, inside the disc, far from both
    assert near["speed"].tolist() == [[True, False, False]]  # only the speed zone reads speed
    with_bound = GuardrailSet([disc.to_dict(), {"type": "bound", "key": "xy", "high": 9.0}],
                              readout=lambda z: {}, readout_keys=("xy",))
    assert with_bound.near(m, radius=1.0)["xy"] is None  # a bound can be violated anywhere


def test_a_guardrail_horizon_checks_only_the_first_steps():
    rails = GuardrailSet([{"type": "keep_out", "key": "xy", "center": [0, 0], "radius": 1.0}],
                         readout=lambda z: {"xy": z}, readout_keys=("xy",), horizon=2)
    z = _traj((2.0, 0.0), (1.5, 0.0), (0.0, 0.0))  # only the third step is inside
    assert rails.per_step(z, NO_ACTIONS).shape == (1, 2) and float(rails(z, NO_ACTIONS)) == 0.0
    rails.horizon = None
    assert float(rails(z, NO_ACTIONS)) == 1.0
    with pytest.raises(ValueError, match="guardrail horizon must be an int >= 1"):
        GuardrailSet(rails.to_list(), readout=lambda z: {"xy": z}, readout_keys=("xy",), horizon=0)


def test_each_guardrail_can_have_its_own_horizon():
    """A keep-out checked on the first step only, a second keep-out on all three: each counts
    where its own horizon reaches; the set's horizon still caps both."""
    near = {"type": "keep_out", "key": "xy", "center": [0, 0], "radius": 1.0, "horizon": 1}
    far = {"type": "keep_out", "key": "xy", "center": [3, 0], "radius": 1.0}
    rails = GuardrailSet([near, far], readout=lambda z: {"xy": z}, readout_keys=("xy",))
    z = _traj((1.5, 0.0), (0.5, 0.0), (2.5, 0.0))  # inside `near` at step 2, inside `far` at step 3
    parts = rails.per_guardrail(z, NO_ACTIONS)
    torch.testing.assert_close(parts["0:keep_out"], torch.tensor([[0.0, 0.0, 0.0]]))
    torch.testing.assert_close(parts["1:keep_out"], torch.tensor([[0.0, 0.0, 0.5]]))
    rails.guardrails[0].horizon = 2
    torch.testing.assert_close(rails.per_step(z, NO_ACTIONS), torch.tensor([[0.0, 0.5, 0.5]]))
    rails.horizon = 2
    assert float(rails(z, NO_ACTIONS)) == 0.5
    assert make_guardrail(near).to_dict()["horizon"] == 1
    for bad in (0, 1.5, True, "3"):
        with pytest.raises(ValueError, match=r"keep_out\.horizon must be an int >= 1"):
            make_guardrail({**near, "horizon": bad})


def test_an_error_horizon_widens_a_guardrail_by_the_readout_error_on_the_first_steps_only():
    """Calibrated error 0.5 at every step, error_horizon 1: step 1 counts the widened disc, the
    later steps the disc itself (with its margin)."""
    spec = {"type": "keep_out", "key": "xy", "center": [0, 0], "radius": 1.0, "margin": 0.1, "error_horizon": 1}
    rails = GuardrailSet([spec], readout=lambda z: {"xy": z}, readout_keys=("xy",))
    z = _traj((1.5, 0.0), (1.5, 0.0), (1.0, 0.0))  # steps 1-2 in the widened ring, step 3 inside
    torch.testing.assert_close(rails.per_step(z, NO_ACTIONS), torch.tensor([[0.0, 0.0, 0.1]]))
    rails.errors = {"xy": torch.full((3,), 0.5)}
    torch.testing.assert_close(rails.per_step(z, NO_ACTIONS), torch.tensor([[0.1, 0.0, 0.1]]))
    rails.guardrails[0].error_horizon = None
    torch.testing.assert_close(rails.per_step(z, NO_ACTIONS), torch.tensor([[0.1, 0.1, 0.6]]))
    with pytest.raises(ValueError, match=r"keep_out\.error_horizon must be an int >= 1"):
        make_guardrail({**spec, "error_horizon": 0})


def test_planner_benchmark_times_each_cell_with_and_without_guardrails(tmp_path):
    """`python -m planners.benchmark --guardrails` reports the planning overhead of hard constraints."""
    from planners.benchmark import main

    out = tmp_path / "latency.json"
    main(["--models", "jepa-d8-h128", "--planners", "mppi", "--horizons", "3", "--samples", "64", "--iterations",
          "1", "--repeats", "2", "--warmup", "1", "--threads", "1", "--guardrails", "--clock", "cpu", "--device", "cpu",
          "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [r["guardrails"] for r in rows] == [False, True]
    assert all(r["median_ms"] > 0 and r["horizon"] == 3 for r in rows)
