"""ArmReach: safety signals (checked against an independent MuJoCo oracle), success, IK goals,
validation, determinism, rendering."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest

import envs
from envs.tasks.arm_reach import EE_RADIUS  # importing the module registers oda/ArmReach-v0

ENV_ID = "oda/ArmReach-v0"
L1 = L2 = 0.12
ZONE = (0.09, 0.08, 0.05)
SPEED_LIMIT = 0.2


def make(**kwargs):
    return envs.make(ENV_ID, **kwargs)


def ik(xy, elbow: int = 1) -> np.ndarray:
    """Independent 2-link IK for the default link lengths."""
    x, y = xy
    q2 = elbow * math.acos(np.clip((x * x + y * y - L1 ** 2 - L2 ** 2) / (2 * L1 * L2), -1, 1))
    return np.array([math.atan2(y, x) - math.atan2(L2 * math.sin(q2), L1 + L2 * math.cos(q2)), q2])


def site_state(model, data) -> tuple[np.ndarray, np.ndarray]:
    """MuJoCo's own ee site position and linear velocity (not the task's analytic kinematics)."""
    mujoco.mj_forward(model, data)
    vel = np.zeros(6)
    mujoco.mj_objectVelocity(model, data, mujoco.mjtObj.mjOBJ_SITE, model.site("ee").id, vel, 0)
    return data.site("ee").xpos[:2].copy(), vel[3:5].copy()


def oracle_step(env, action) -> tuple[bool, bool]:
    """(person_speed, hazard) for the next control step, from a copy stepped one substep at a time."""
    u = env.unwrapped
    model, task = u.physics.model, u.task
    data = mujoco.MjData(model)
    mujoco.mj_copyData(data, model, u.physics.data)
    data.ctrl[:] = np.clip(action, -1, 1)
    person = hazard = False
    for _ in range(u.physics.n_substeps):
        mujoco.mj_step(model, data)
        pos, vel = site_state(model, data)
        if task.person_zone is not None:
            zx, zy, zr = task.person_zone
            person |= math.hypot(pos[0] - zx, pos[1] - zy) <= zr and np.linalg.norm(vel) > task.speed_limit
        hazard |= any(math.hypot(pos[0] - x, pos[1] - y) <= r + EE_RADIUS for x, y, r in task.hazards)
    return person, hazard


def run_checked(env, actions):
    """Step ``actions``, asserting each step's safety equals the oracle's; returns the infos."""
    infos = []
    for a in actions:
        expected = oracle_step(env, a)
        _, _, terminated, _, info = env.step(a)
        assert not terminated
        assert (info["safety"]["person_speed"], info["safety"]["hazard"]) == expected
        infos.append(info)
    return infos


def test_registration_spaces_and_info_contract():
    spec = envs.get_spec(ENV_ID)
    assert set(spec.tags) == {"goal", "manipulation", "safety", "oda"} and spec.episode_steps == 200
    env = make(seed=0)
    u = env.unwrapped
    assert u.goal_conditioned and u.has_success and u.episode_steps == 200
    assert 0.02 <= u.physics.control_timestep <= 0.05
    obs, info = env.reset()
    assert obs.shape == (6,) and obs.dtype == np.float32 and env.observation_space.contains(obs)
    shapes = {"ee_pos": 2, "ee_vel": 2, "ee_speed": 1, "joint_pos": 2, "joint_angle": 4, "joint_vel": 2, "goal_pos": 2,
              "goal_distance": 1, "person_distance": 1, "hazard_distance": 1}
    for _ in range(3):
        assert tuple(info["measurements"]) == u.measurement_keys and set(shapes) == set(u.measurement_keys)
        for k, n in shapes.items():
            assert info["measurements"][k].shape == (n,) and info["measurements"][k].dtype == np.float64
        assert set(info["safety"]) == {"person_speed", "hazard"}
        assert all(isinstance(v, bool) for v in info["safety"].values())
        q = info["measurements"]["joint_pos"]
        np.testing.assert_allclose(obs[:4], np.float32([np.cos(q[0]), np.sin(q[0]), np.cos(q[1]), np.sin(q[1])]),
                                   atol=1e-6)
        np.testing.assert_allclose(obs[:4], info["measurements"]["joint_angle"], atol=1e-6)
        np.testing.assert_allclose(obs[4:], info["measurements"]["joint_vel"], atol=1e-5)
        obs, _, _, _, info = env.step(env.action_space.sample())


def test_kinematics_match_mujoco_site():
    env = make()
    rng = np.random.default_rng(1)
    for _ in range(10):
        _, info = env.reset(options={"start_qpos": rng.uniform(-3, 3, 2), "start_qvel": rng.uniform(-5, 5, 2)})
        for _ in range(2):
            m = info["measurements"]
            pos, vel = site_state(env.unwrapped.physics.model, env.unwrapped.physics.data)
            np.testing.assert_allclose(m["ee_pos"], pos, atol=1e-12)
            np.testing.assert_allclose(m["ee_vel"], vel, atol=1e-12)
            assert m["ee_speed"][0] == pytest.approx(np.linalg.norm(vel))
            _, _, _, _, info = env.step(rng.uniform(-1, 1, 2))


def _sweep_actions(env, a1: float, n: int, q2_hold: float):
    """Constant shoulder torque ``a1``, elbow held near ``q2_hold`` by a PD (joint-space controller)."""
    for _ in range(n):
        q2, w2 = env.unwrapped.physics.data.qpos[1], env.unwrapped.physics.data.qvel[1]
        yield np.array([a1, np.clip(8.0 * (q2_hold - q2) - 0.3 * w2, -1, 1)])


@pytest.mark.parametrize("fast", [True, False])
def test_person_speed_fires_fast_not_slow(fast):
    r = math.hypot(*ZONE[:2])  # sweep the ee along the circle through the zone centre
    q = ik((r * math.cos(0.1), r * math.sin(0.1)))  # start at 6 deg, zone spans ~17..66 deg
    env = make(episode_steps=400)
    env.reset(options={"start_qpos": q, "goal_xy": (-0.1, -0.1)})
    infos = run_checked(env, list(_sweep_actions(env, 1.0 if fast else 0.1, 12 if fast else 110, q[1])))
    inside = [i["measurements"]["person_distance"][0] < 0 for i in infos]
    speed = [i["measurements"]["ee_speed"][0] for i in infos]
    fired = [i["safety"]["person_speed"] for i in infos]
    assert sum(inside) >= 2  # it did pass through the zone
    if fast:
        assert any(fired) and max(speed) > 2 * SPEED_LIMIT
        # at the observed state the flag is exactly the condition (substeps can only add to it)
        assert all(f for f, i, v in zip(fired, inside, speed, strict=True) if i and v > SPEED_LIMIT)
    else:
        assert not any(fired) and 0.3 * SPEED_LIMIT < max(speed) < SPEED_LIMIT


@pytest.mark.parametrize("inside, factor, expected", [(True, 1.02, True), (True, 0.98, False),
                                                     (False, 3.0, False)])
def test_person_speed_boundary_at_reset(inside, factor, expected):
    env = make()
    p = np.array(ZONE[:2]) + (0.0 if inside else 0.07)
    qvel = (factor * SPEED_LIMIT / np.linalg.norm(p), 0.0)  # pure shoulder rotation: speed = |ee| * w
    _, info = env.reset(options={"start_qpos": ik(p), "start_qvel": qvel, "goal_xy": (-0.1, -0.1)})
    assert info["measurements"]["ee_speed"][0] == pytest.approx(factor * SPEED_LIMIT)
    assert (info["measurements"]["person_distance"][0] < 0) == inside
    assert info["safety"]["person_speed"] is expected


@pytest.mark.parametrize("offset, expected", [(-1e-5, True), (1e-5, False)])
def test_hazard_fires_exactly_when_touching(offset, expected):
    hx, hy, hr = -0.02, -0.13, 0.03
    env = make(hazards=[(hx, hy, hr)])
    p = np.array([hx, hy]) + (hr + EE_RADIUS + offset) * np.array([0.6, 0.8])
    _, info = env.reset(options={"start_qpos": ik(p), "goal_xy": (0.1, 0.1)})
    assert info["measurements"]["hazard_distance"][0] == pytest.approx(offset, abs=1e-9)
    assert info["safety"]["hazard"] is expected
    for _ in range(5):  # at rest with no torque and no gravity the arm stays put
        _, _, terminated, _, info = env.step(np.zeros(2))
        assert info["safety"]["hazard"] is expected and not terminated
    none = make(hazards=(), person_zone=None)
    _, info = none.reset(options={"start_qpos": ik(p)})
    assert not info["safety"]["hazard"] and info["measurements"]["hazard_distance"][0] > 1.0
    assert info["measurements"]["person_distance"][0] > 1.0


def test_fast_pass_through_hazard_between_control_steps_is_caught():
    q0, actions = (0.0, 0.5), [np.array([1.0, 0.0])] * 24
    free = make(hazards=(), person_zone=None)
    free.reset(options={"start_qpos": q0, "goal_xy": (-0.1, 0.1)})
    for a in actions[:-1]:
        free.step(a)
    u = free.unwrapped
    data = mujoco.MjData(u.physics.model)
    mujoco.mj_copyData(data, u.physics.model, u.physics.data)
    before = site_state(u.physics.model, data)[0]
    data.ctrl[:] = actions[-1]
    mujoco.mj_step(u.physics.model, data, nstep=2)
    mid = site_state(u.physics.model, data)[0]  # ee between two observations
    hr = 0.002
    env = make(hazards=[(*mid, hr)], person_zone=None)
    env.reset(options={"start_qpos": q0, "goal_xy": (-0.1, 0.1)})
    infos = run_checked(env, actions)
    after = infos[-1]["measurements"]["ee_pos"]
    assert min(np.linalg.norm(before - mid), np.linalg.norm(after - mid)) > hr + EE_RADIUS
    assert all(i["measurements"]["hazard_distance"][0] > 0 for i in infos)  # no observed state touches
    assert infos[-1]["safety"]["hazard"] and not any(i["safety"]["hazard"] for i in infos[:-1])


def test_never_terminates_on_safety_violation():
    for terminate_on_success in (False, True):
        env = make(episode_steps=60, terminate_on_success=terminate_on_success)
        q = ik((0.12, 0.0))
        env.reset(options={"start_qpos": q, "goal_xy": (0.0, 0.2)})
        seen = {"person_speed": False, "hazard": False}
        # spin the shoulder at full torque for a full turn: crosses the zone and the hazard fast
        for t, a in enumerate(_sweep_actions(env, 1.0, 60, q[1])):
            _, _, terminated, truncated, info = env.step(a)
            assert not terminated and truncated == (t == 59)
            for k, v in info["safety"].items():
                seen[k] |= v
        assert all(seen.values())


@pytest.mark.parametrize("offset, expected", [(-1e-5, True), (1e-5, False)])
def test_success_exactly_at_radius(offset, expected):
    env = make(terminate_on_success=True)
    goal = np.array([0.05, 0.15])
    sr = env.unwrapped.task.success_radius
    p = goal + (sr + offset) * np.array([0.8, -0.6])
    _, info = env.reset(options={"start_qpos": ik(p, elbow=-1), "goal_xy": goal})
    assert info["success"] is expected
    np.testing.assert_allclose(info["desired_goal"], goal)
    np.testing.assert_allclose(info["achieved_goal"], p, atol=1e-12)
    _, reward, terminated, _, info = env.step(np.zeros(2))
    assert info["success"] is expected and terminated is expected and reward == float(expected)


def test_pd_controller_reaches_goal_and_success_tracks_distance():
    env = make(terminate_on_success=True, hazards=(), person_zone=None)
    goal = np.array([-0.1, 0.12])
    _, info = env.reset(options={"start_qpos": (0.0, 0.3), "goal_xy": goal})
    target = ik(goal)
    sr = env.unwrapped.task.success_radius
    for _ in range(200):
        q, w = info["measurements"]["joint_pos"], info["measurements"]["joint_vel"]
        err = np.remainder(target - q + np.pi, 2 * np.pi) - np.pi
        _, reward, terminated, _, info = env.step(np.clip(4.0 * err - 0.3 * w, -1, 1))
        assert info["success"] == (info["measurements"]["goal_distance"][0] <= sr) == terminated
        if terminated:
            break
    assert terminated and reward == 1.0


def test_goal_observation_is_ik_state_at_goal():
    env = make()
    u = env.unwrapped
    for seed in range(8):
        obs, info = env.reset(seed=seed)
        g_obs = u.goal_observation()
        q = np.array([math.atan2(g_obs[1], g_obs[0]), math.atan2(g_obs[3], g_obs[2])])
        assert q[1] >= 0 and np.all(g_obs[4:] == 0)  # the q2 >= 0 elbow, at rest
        data = mujoco.MjData(u.physics.model)
        data.qpos[:] = q
        np.testing.assert_allclose(site_state(u.physics.model, data)[0], info["desired_goal"], atol=1e-6)
        # the state is restored
        assert np.array_equal(u.task.get_observation(u.physics), obs)
        np.testing.assert_allclose(u._info()["measurements"]["ee_pos"], info["measurements"]["ee_pos"])
    # at the workspace's rim too
    _, info = env.reset(options={"goal_xy": (0.0, -0.2399)})
    g_obs = u.goal_observation()
    assert g_obs[2] == pytest.approx(math.cos(2 * math.acos(0.2399 / 0.24)), abs=1e-6)


def test_sampled_starts_and_goals():
    task = make().unwrapped.task
    lo, hi = task.annulus
    for sampling in ("uniform", "crossing"):
        env = make(goal_sampling=sampling)
        crossings = 0
        for seed in range(30):
            _, info = env.reset(seed=seed)
            m = info["measurements"]
            s, g = m["ee_pos"], m["goal_pos"]
            assert lo <= np.linalg.norm(g) <= hi and lo - 1e-9 <= np.linalg.norm(s) <= hi + 1e-9
            assert m["hazard_distance"][0] > 0 and not info["success"]
            assert all(math.hypot(g[0] - x, g[1] - y) > r + EE_RADIUS for x, y, r in task.hazards)
            pts = s + np.linspace(0, 1, 400)[:, None] * (g - s)
            crossings += bool(np.min(np.linalg.norm(pts - ZONE[:2], axis=1)) < ZONE[2]
                              or min(np.min(np.linalg.norm(pts - (x, y), axis=1)) - r - EE_RADIUS
                                     for x, y, r in task.hazards) < 0)
        if sampling == "crossing":
            assert crossings == 30
        else:
            assert 0 < crossings < 30  # the default layout blocks some careless straight paths


def test_reset_determinism():
    env, other = make(), make()
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (40, 2))
    runs = []
    for e in (env, env, other):
        obs, info = e.reset(seed=7)
        traj = [obs, info["desired_goal"]]
        for a in actions:
            obs, _, _, _, info = e.step(a)
            traj += [obs, info["measurements"]["ee_pos"], np.array(list(info["safety"].values()))]
        runs.append(traj)
    for traj in runs[1:]:
        assert all(np.array_equal(x, y) for x, y in zip(runs[0], traj, strict=True))
    assert not np.array_equal(env.reset(seed=8)[1]["desired_goal"], runs[0][1])


@pytest.mark.parametrize("kwargs, name", [
    ({"link_lengths": (0.1,)}, "link_lengths"), ({"link_lengths": (-0.1, 0.1)}, "link_lengths"),
    ({"person_zone": (0.1, 0.0, 0.0)}, "person_zone"), ({"person_zone": (0.1, 0.0, -0.02)}, "person_zone"),
    ({"person_zone": (0.1, 0.0, float("nan"))}, "person_zone"), ({"person_zone": (0.3, 0.0, 0.05)}, "person_zone"),
    ({"person_zone": (0.2, 0.0, 0.05)}, "person_zone"),
    ({"link_lengths": (0.15, 0.05), "person_zone": (0.0, 0.02, 0.05), "hazards": ()}, "person_zone"),
    ({"hazards": [(0.0, 0.3, 0.02)]}, "hazards"), ({"hazards": [(0.0, 0.1, 0.0)]}, "hazards"),
    ({"hazards": "abc"}, "hazards"), ({"hazards": [(0.0, 0.0, 0.235)]}, "hazards"),
    ({"speed_limit": 0.0}, "speed_limit"), ({"speed_limit": -1.0}, "speed_limit"),
    ({"success_radius": 0.0}, "success_radius"), ({"success_radius": 0.5}, "success_radius"),
    ({"episode_steps": 0}, "episode_steps"), ({"episode_steps": 1.5}, "episode_steps"),
    ({"goal_sampling": "random"}, "goal_sampling"), ({"terminate_on_success": "yes"}, "terminate_on_success"),
])
def test_parameters_validated(kwargs, name):
    with pytest.raises(ValueError, match=name):
        make(**kwargs)


@pytest.mark.parametrize("options, name", [
    ({"goal_xy": (0.3, 0.0)}, "unreachable"), ({"goal_xy": (0.0, 0.0, 0.0)}, "goal_xy"),
    ({"goal_xy": (-0.02, -0.13)}, "hazard"), ({"start_qpos": (0.0,)}, "start_qpos"),
    ({"start_qvel": (np.inf, 0.0)}, "start_qvel"), ({"goal": (0.1, 0.1)}, "unknown"),
])
def test_reset_options_validated(options, name):
    with pytest.raises(ValueError, match=name):
        make().reset(options=options)
    with pytest.raises(ValueError, match="unreachable"):  # inside the inner hole of unequal links
        make(link_lengths=(0.15, 0.05), hazards=()).reset(options={"goal_xy": (0.05, 0.0)})


def test_render_shows_zone_hazard_goal_and_arm():
    env = make(obs="pixels", image_size=64)
    frame, _ = env.reset(seed=0, options={"start_qpos": (-2.5, 0.0), "goal_xy": (-0.15, 0.1)})
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    r, g, b = (frame[..., i].astype(int) for i in range(3))
    assert np.sum((r > 150) & (g > 150) & (b < 120)) > 20  # yellow person zone
    assert np.sum((r > 150) & (g < 90) & (b < 90)) > 5  # red hazard
    assert np.sum((g > 150) & (r < 120) & (b < 120)) == 0  # the goal disc: not in observations ...
    shown = env.unwrapped.render_frame(64, 64).astype(int)
    assert np.sum((shown[..., 1] > 150) & (shown[..., 0] < 120) & (shown[..., 2] < 120)) > 3  # ... in frames for people
    assert np.sum((b > 180) & (r < 140)) > 10  # blue arm
    goal_frame = env.unwrapped.goal_observation()
    assert goal_frame.shape == frame.shape and not np.array_equal(goal_frame, frame)
    assert np.array_equal(env.unwrapped.observation_frame(), frame)  # state restored
