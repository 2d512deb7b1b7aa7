"""Tests of the Push task (envs/tasks/push.py) on the real MuJoCo physics."""

from __future__ import annotations

import math

import numpy as np
import pytest

import envs
import envs.tasks.push as push  # registers oda/Push-v0 on import
from envs.registry import get_spec

R = push.PUSHER_RADIUS
FAR = (-0.2, -0.2)  # a pusher spot far from the blocks placed in these tests


def make(**kwargs):
    env = envs.make("oda/Push-v0", **kwargs)
    return env, env.unwrapped


def reset(env, block=(0.0, 0.0, 0.0), goal=(0.1, 0.1, 0.0), pusher=FAR):
    return env.reset(seed=0, options={"block_pose": block, "goal_pose": goal, "pusher_xy": pusher})


def test_registered_with_tags_and_contract_keys():
    spec = get_spec("oda/Push-v0")
    assert set(spec.tags) == {"goal", "manipulation", "contact", "oda"}
    assert spec.description
    env, base = make(episode_steps=7)
    obs, info = env.reset(seed=0)
    assert obs.shape == (11,) and obs.dtype == np.float32 and env.observation_space.contains(obs)
    assert base.goal_conditioned and base.has_success and base.safety_keys == ("keepout",)
    for step in range(7):
        for key in base.measurement_keys:
            m = info["measurements"][key]
            assert m.dtype == np.float64 and m.ndim == 1
        assert set(info["measurements"]) == set(base.measurement_keys)
        assert set(info["safety"]) == {"keepout"} and info["safety"]["keepout"] is False
        assert info["desired_goal"].shape == info["achieved_goal"].shape == (4,)
        obs, _, terminated, truncated, info = env.step(env.action_space.sample())
        assert truncated == (step == 6) and not terminated
    assert abs(base.physics.control_timestep - 0.05) < 1e-9
    env.close()


@pytest.mark.parametrize("shape", ["square", "T"])
def test_pushing_moves_block_in_push_direction(shape):
    env, _ = make(block=shape)
    obs, info = reset(env, pusher=(-0.12, 0.0))
    assert info["measurements"]["contact"][0] == 0.0
    touched = False
    for _ in range(12):
        obs, _, _, _, info = env.step(np.array([1.0, 0.0]))
        touched |= info["measurements"]["contact"][0] == 1.0
    assert touched
    bx, by = info["measurements"]["block_pose"][:2]
    assert bx > 0.08 and abs(by) < 0.02 * bx
    assert obs[4] == pytest.approx(bx, abs=1e-6)
    # once the pusher stops, the block stops too (friction), it does not drift
    for _ in range(20):
        obs, *_ = env.step(np.zeros(2))
    still = obs.copy()
    for _ in range(10):
        obs, *_ = env.step(np.zeros(2))
    np.testing.assert_allclose(obs[4:8], still[4:8], atol=1e-5)
    assert np.abs(obs[8:11]).max() < 1e-3
    env.close()


def test_without_contact_block_does_not_move():
    env, _ = make(block="T")
    obs0, _ = reset(env, block=(0.1, 0.1, 0.7), pusher=(-0.1, -0.1))
    for k in range(40):
        action = np.array([math.cos(k / 5), math.sin(k / 5)])  # loops around its start, away from the block
        obs, _, _, _, info = env.step(action)
        assert info["measurements"]["contact"][0] == 0.0
    assert np.linalg.norm(obs[:2] - obs0[:2]) > 0.01  # the pusher did move
    np.testing.assert_array_equal(obs[4:11], obs0[4:11])
    env.close()


def test_pusher_velocity_servo_reaches_commanded_speed():
    env, _ = make()
    reset(env, block=(0.15, 0.15, 0.0), pusher=(-0.2, -0.1))
    for _ in range(6):
        _, _, _, _, info = env.step(np.array([1.0, -0.5]))
    np.testing.assert_allclose(info["measurements"]["pusher_vel"], [push.MAX_SPEED, -push.MAX_SPEED / 2], rtol=0.05)
    env.close()


def test_success_square_position_and_symmetric_angle():
    tol, atol = 0.02, 0.2
    env, _ = make(success_pos_tol=tol, success_angle_tol=atol)
    g = np.array([0.05, -0.03, 0.4])
    cases = [((0, 0, 0), True), ((0.9 * tol, 0, 0), True), ((0, -0.9 * tol, 0), True), ((1.1 * tol, 0, 0), False),
             ((0, 0, 0.9 * atol), True), ((0, 0, -0.9 * atol), True), ((0, 0, 1.1 * atol), False),
             ((0, 0, math.pi / 2), True), ((0, 0, -math.pi / 2 + 0.5 * atol), True), ((0, 0, math.pi), True),
             ((0, 0, math.pi / 4), False), ((0, 0, math.pi / 2 + 1.1 * atol), False), ((0, 0, 4 * math.pi), True)]
    for delta, expected in cases:
        _, info = reset(env, block=g + np.array(delta), goal=g)
        assert info["success"] is expected, delta
        m = info["measurements"]
        assert m["position_error"][0] == pytest.approx(math.hypot(*delta[:2]), abs=1e-9)
        assert m["angle_error"][0] <= math.pi / 4 + 1e-9
        np.testing.assert_allclose(m["goal_pose"], g)
        _, reward, *_ = env.step(np.zeros(2))
        assert reward == float(expected)
    env.close()


def test_t_block_shape_and_no_angle_symmetry():
    env, base = make(block="T", success_angle_tol=0.2)
    model = base.physics.model
    block_geoms = [model.geom(i) for i in range(model.ngeom) if model.geom(i).bodyid[0] == model.body("block").id]
    assert sorted(g.name for g in block_geoms) == ["block_bar", "block_stem"]
    bar, stem = model.geom("block_bar"), model.geom("block_stem")
    u = push.T_UNIT
    np.testing.assert_allclose(bar.size[:2], [2 * u, u / 2])
    np.testing.assert_allclose(stem.size[:2], [u / 2, 1.5 * u])
    assert bar.pos[1] - bar.size[1] == pytest.approx(stem.pos[1] + stem.size[1])  # stem hangs under the bar
    assert bar.pos[0] == stem.pos[0] == 0.0
    assert 4 * bar.pos[1] + 3 * stem.pos[1] == pytest.approx(0.0, abs=1e-9)  # body origin at the centroid
    g = np.array([0.0, 0.05, 0.0])
    for dth, err, ok in [(0.0, 0.0, True), (math.pi / 2, math.pi / 2, False), (-math.pi / 2, math.pi / 2, False),
                         (math.pi, math.pi, False), (2 * math.pi + 0.1, 0.1, True), (0.25, 0.25, False)]:
        _, info = reset(env, block=g + np.array([0, 0, dth]), goal=g)
        assert info["measurements"]["angle_error"][0] == pytest.approx(err, abs=1e-9)
        assert info["success"] is ok
    env.close()


def test_keepout_fires_exactly_on_overlap():
    rect = (0.1, 0.1, 0.2, 0.2)
    env, task = make(keepout=rect)
    task = task.task
    h = push.SQUARE_HALF

    def safety(block, pusher):
        _, info = reset(env, block=block, pusher=pusher)
        return info["safety"]["keepout"]

    far_block = (-0.1, -0.1, 0.0)
    assert not safety(far_block, (0.1 - R - 1e-3, 0.15)) and safety(far_block, (0.1 - R + 1e-3, 0.15))
    d = R / math.sqrt(2)  # pusher off the corner: its bounding box overlaps, the disc does not
    assert not safety(far_block, (0.1 - d - 1e-3, 0.1 - d - 1e-3))
    assert safety(far_block, (0.1 - d + 1e-3, 0.1 - d + 1e-3))
    assert safety(far_block, (0.15, 0.15))  # fully inside
    assert not safety((0.1 - h - 1e-3, 0.15, 0.0), FAR) and safety((0.1 - h + 1e-3, 0.15, 0.0), FAR)
    diag = h * math.sqrt(2)
    q = math.pi / 4
    assert not safety((0.1 - diag - 1e-3, 0.15, q), FAR) and safety((0.1 - diag + 1e-3, 0.15, q), FAR)
    # a 45-degree square off the corner faces it with an edge: its bounding box overlaps, it does not
    a = h / math.sqrt(2)
    assert not safety((0.1 - a - 1e-3, 0.1 - a - 1e-3, q), FAR) and safety((0.1 - a + 1e-3, 0.1 - a + 1e-3, q), FAR)
    # the T: a zone in the notch under its bar, beside its stem, is not touched
    assert not push.PushTask(block="T", keepout=(0.02, -0.05, 0.05, 0.0)).block_in_keepout(np.zeros(3))
    assert push.PushTask(block="T", keepout=(0.0, -0.05, 0.05, 0.0)).block_in_keepout(np.zeros(3))
    # driving the pusher into the zone raises the signal during steps (never terminates)
    reset(env, block=far_block, pusher=(0.0, 0.15))
    flags = []
    for _ in range(10):
        _, _, terminated, _, info = env.step(np.array([1.0, 0.0]))
        flags.append(info["safety"]["keepout"])
        assert not terminated
    assert not flags[0] and flags[-1]
    env.close()


@pytest.mark.parametrize("shape", ["square", "T"])
def test_goal_observation_is_obs_with_block_at_goal(shape):
    env, base = make(block=shape, seed=3)
    obs, info = env.reset()
    goal = info["measurements"]["goal_pose"]
    goal_obs = base.goal_observation()
    np.testing.assert_array_equal(base.task.get_observation(base.physics), obs)  # state restored
    spot = base.task.goal_pusher_xy(goal)
    assert base.task.pusher_block_distance(spot, goal) == pytest.approx(push.GOAL_GAP)
    obs_at_goal, info = env.reset(options={"block_pose": goal, "goal_pose": goal, "pusher_xy": spot})
    np.testing.assert_allclose(goal_obs, obs_at_goal, atol=1e-6)
    assert info["success"]
    np.testing.assert_allclose(info["desired_goal"], info["achieved_goal"], atol=1e-12)
    np.testing.assert_allclose(info["desired_goal"], [goal[0], goal[1], math.cos(goal[2]), math.sin(goal[2])])
    env.close()


def test_nothing_leaves_table_under_random_actions():
    w = push.HALF_TABLE
    pen = 0.01  # soft contacts: hitting a wall at full speed sinks up to ~8 mm into its 40 mm
    for shape in ("square", "T"):
        env, base = make(block=shape, seed=1)
        env.reset()
        rng = np.random.default_rng(0)
        reach = 0.0
        for k in range(300):
            # bias toward the walls in bursts so the block gets jammed against them
            action = rng.uniform(-1, 1, 2) if k % 40 < 20 else np.sign(rng.uniform(-1, 1, 2))
            obs, _, _, _, info = env.step(action)
            assert np.isfinite(obs).all()
            assert np.abs(obs[:2]).max() < w - R + pen
            reach = max(reach, float(np.abs(obs[:2]).max()))
            pose = info["measurements"]["block_pose"]
            for cx, cy, a, b, th in push.block_boxes(shape, pose):
                c, s = abs(math.cos(th)), abs(math.sin(th))
                assert abs(cx) + c * a + s * b < w + pen and abs(cy) + s * a + c * b < w + pen
        assert reach > w - R - 0.005  # the pusher did reach the walls
        env.close()


def test_reset_determinism_and_sampling_constraints():
    env1, _ = make(block="T", keepout=(-0.05, -0.05, 0.05, 0.05))
    env2, base = make(block="T", keepout=(-0.05, -0.05, 0.05, 0.05))
    o1, _ = env1.reset(seed=5)
    o2, _ = env2.reset(seed=5)
    np.testing.assert_array_equal(o1, o2)
    rng = np.random.default_rng(0)
    for _ in range(30):
        a = rng.uniform(-1, 1, 2)
        np.testing.assert_array_equal(env1.step(a)[0], env2.step(a)[0])
    assert not np.array_equal(env1.reset(seed=6)[0], o1)
    task = base.task
    for seed in range(40):
        _, info = env2.reset(seed=seed)
        m = info["measurements"]
        assert np.linalg.norm(m["block_pose"][:2] - m["goal_pose"][:2]) >= push.MIN_SEPARATION
        assert task.pusher_block_distance(m["pusher_xy"], m["block_pose"]) > 0.01
        assert not info["safety"]["keepout"] and not task.block_in_keepout(m["goal_pose"])
        assert not info["success"]
    env1.close()
    env2.close()


def test_keepout_clearance_keeps_starts_and_goals_off_the_widened_box():
    """The guardrails of launch/push-keepout.yaml keep centres 0.067 m off the box whatever the block's
    angle; with that clearance no sampled start or goal lies where those guardrails forbid it."""
    rect, clearance = (-0.06, -0.06, 0.06, 0.06), 0.067

    def dist(xy):
        return math.hypot(xy[0] - min(max(xy[0], rect[0]), rect[2]), xy[1] - min(max(xy[1], rect[1]), rect[3]))

    near = {False: 0, True: 0}
    for cleared in (False, True):
        env, base = make(keepout=rect, keepout_clearance=clearance if cleared else 0.0)
        for seed in range(40):
            _, info = env.reset(seed=seed)
            m = info["measurements"]
            centres = (m["block_pose"][:2], m["goal_pose"][:2], m["pusher_xy"],
                       base.task.goal_pusher_xy(m["goal_pose"]))
            near[cleared] += sum(dist(c) < clearance for c in centres)
            assert not info["safety"]["keepout"]
        env.close()
    assert near[False] > 0 and near[True] == 0  # the clearance is what moved them


def test_terminate_on_success_and_rendering():
    env, base = make(terminate_on_success=True, obs="pixels", image_size=64, keepout=(0.15, 0.15, 0.25, 0.25))
    g = (0.0, 0.0, 0.0)
    frame, _ = reset(env, block=(-0.1, 0.0, 0.0), goal=g, pusher=(0.1, -0.1))
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    r, gr, b = (frame[..., i].astype(int) for i in range(3))
    assert ((gr > r + 60) & (gr > b + 60)).sum() == 0  # the green goal copy: not in observations ...
    shown = base.render_frame(64, 64).astype(int)
    assert ((shown[..., 1] > shown[..., 0] + 60) & (shown[..., 1] > shown[..., 2] + 60)).sum() > 10  # ... for people
    assert ((b > r + 60) & (b > gr + 40)).sum() > 10  # blue block
    assert ((r > gr + 80) & (r > b + 80) & (gr < 150)).sum() > 2  # red pusher
    assert ((r > 200) & (gr > 150) & (b < 80)).sum() > 10  # yellow keep-out
    goal_frame = base.goal_observation()
    assert goal_frame.shape == frame.shape and not np.array_equal(goal_frame, frame)
    reset(env, block=g, goal=g)
    _, _, terminated, _, info = env.step(np.zeros(2))
    assert info["success"] and terminated
    env.close()


@pytest.mark.parametrize("kwargs", [
    {"block": "circle"}, {"success_pos_tol": 0.0}, {"success_pos_tol": -0.1}, {"success_pos_tol": "a"},
    {"success_angle_tol": 0.0}, {"success_angle_tol": 4.0}, {"episode_steps": 0}, {"episode_steps": 1.5},
    {"keepout": (0.2, 0.0, 0.1, 0.1)}, {"keepout": (0.0, 0.0, 0.1)}, {"keepout": (0.0, 0.0, np.nan, 0.1)},
    {"keepout_clearance": -0.01}, {"keepout_clearance": 1.0}, {"keepout_clearance": "a"},
])
def test_bad_parameters_raise(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        envs.make("oda/Push-v0", **kwargs)


@pytest.mark.parametrize("options", [
    {"block_pose": (0.4, 0.0, 0.0)}, {"goal_pose": (0.0, 0.0)}, {"pusher_xy": (0.0, np.inf)},
])
def test_bad_reset_options_raise(options):
    env, _ = make()
    with pytest.raises(ValueError, match=next(iter(options))):
        env.reset(seed=0, options=options)
    env.close()


@pytest.mark.parametrize("shape, same", [("square", True), ("T", False)])
def test_orientation_is_observed_modulo_the_shapes_symmetry(shape, same):
    """A square turned by 90 degrees looks the same and counts as the same for success: it
    observes the same; a T does not."""
    env, _ = make(block=shape)
    a, info = reset(env, block=(0.0, 0.0, 0.3))
    b, _ = reset(env, block=(0.0, 0.0, 0.3 + math.pi / 2))
    assert np.allclose(a, b, atol=1e-6) == same
    np.testing.assert_allclose(info["measurements"]["block_xy"], info["measurements"]["block_pose"][:2])
    env.close()


def test_play_policy_pushes_the_block_about_and_never_looks_at_the_goal():
    """The scripted play policy (training.seed_policy: play) moves the block in a good share of steps,
    where sticky random actions rarely do, and its actions do not depend on the goal."""
    def run(goal, steps=300):
        env, base = make()
        reset(env, block=(0.05, 0.0, 0.3), goal=goal, pusher=(-0.15, 0.15))
        rng, actions, moving = np.random.default_rng(7), [], 0
        for _ in range(steps):
            a = base.play_action(rng)
            assert a.shape == (2,) and a.dtype == np.float32 and np.all(np.abs(a) <= 1.0)
            _, _, _, _, info = env.step(a)
            actions.append(a)
            moving += np.linalg.norm(info["measurements"]["block_vel"][:2]) > 1e-3
        return np.asarray(actions), moving / steps, info["measurements"]["block_pose"]

    actions, moving, pose = run(goal=(0.1, 0.1, 0.0))
    assert moving > 0.25, moving
    assert math.dist(pose[:2], (0.05, 0.0)) > 0.03 or abs(pose[2] - 0.3) > 0.2  # the block went somewhere
    other, _, _ = run(goal=(-0.12, -0.1, 1.0))
    np.testing.assert_array_equal(actions, other)
