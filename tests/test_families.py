"""The dm_control and Gymnasium families and the wrappers `envs.make` adds."""

import gymnasium as gym
import numpy as np
import pytest

import envs


def test_unknown_id_and_bad_arguments_are_named():
    with pytest.raises(KeyError, match="unknown env id 'dmc/walker-fly'"):
        envs.make("dmc/walker-fly")
    with pytest.raises(ValueError, match="observation mode 'rgb'"):
        envs.make("dmc/cartpole-swingup", obs="rgb")
    with pytest.raises(ValueError, match="action_repeat"):
        envs.make("dmc/cartpole-swingup", action_repeat=0)


def test_every_dmc_benchmarking_task_is_registered():
    from dm_control import suite

    ids = {s.id for s in envs.list_specs(family="dmc")}
    assert ids == {f"dmc/{d}-{t}" for d, t in suite.BENCHMARKING}


def test_gym_v5_tasks_registered():
    ids = {s.id for s in envs.list_specs(family="gym")}
    for name in ("Reacher", "Pusher", "InvertedPendulum", "HalfCheetah", "Hopper", "Walker2d", "Ant"):
        assert f"gym/{name}-v5" in ids


@pytest.mark.parametrize("domain_task, accessors", [
    ("cartpole-swingup", {"cart_position": "cart_position", "pole_angle_cos": "pole_angle_cosine"}),
    ("reacher-easy", {"finger_to_target_dist": "finger_to_target_dist"}),
    ("walker-walk", {"torso_height": "torso_height", "speed": "horizontal_velocity"}),
    ("hopper-hop", {"torso_height": "height", "speed": "speed"}),
    ("cheetah-run", {"speed": "speed"}),
    ("pendulum-swingup", {"pole_vertical": "pole_vertical", "angular_velocity": "angular_velocity"}),
])
def test_dmc_measurements_equal_the_suites_accessors(domain_task, accessors):
    env = envs.make(f"dmc/{domain_task}", seed=0)
    env.reset()
    physics = env.unwrapped._physics
    for _ in range(4):
        *_, info = env.step(env.action_space.sample())
        for key, accessor in accessors.items():
            np.testing.assert_allclose(info["measurements"][key], np.ravel(getattr(physics, accessor)()))


def test_cartpole_pole_sine_and_cosine_are_the_suites_bounded_position():
    env = envs.make("dmc/cartpole-swingup", seed=0)
    env.reset()
    physics = env.unwrapped._physics
    for _ in range(4):
        *_, info = env.step(env.action_space.sample())
        m = info["measurements"]
        got = np.concatenate([m["cart_position"], m["pole_angle_cos"], m["pole_angle_sin"]])
        np.testing.assert_allclose(got, physics.bounded_position())
        np.testing.assert_allclose(m["pole_angle_cos"] ** 2 + m["pole_angle_sin"] ** 2, 1.0, rtol=1e-6)


def test_dmc_action_repeat_sums_rewards_and_matches_single_steps():
    actions = np.random.default_rng(1).uniform(-1, 1, size=(6, 1)).astype(np.float32)
    fine = envs.make("dmc/cartpole-swingup", action_repeat=1)
    coarse = envs.make("dmc/cartpole-swingup", action_repeat=2)
    fine.reset(seed=5)
    coarse.reset(seed=5)
    for a in actions:
        _, r1a, *_ = fine.step(a)
        obs1, r1b, *_ = fine.step(a)
        obs2, r2, *_ = coarse.step(a)
        np.testing.assert_allclose(r2, r1a + r1b, rtol=1e-6)
        np.testing.assert_array_equal(obs2, obs1)


def test_dmc_episode_is_500_agent_steps_and_truncated_not_terminated():
    env = envs.make("dmc/pendulum-swingup")  # default action repeat 2
    env.reset(seed=0)
    zero = np.zeros(1, dtype=np.float32)
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated):
        _, _, terminated, truncated, _ = env.step(zero)
        steps += 1
    assert steps == 500 and truncated and not terminated
    assert envs.get_spec("dmc/pendulum-swingup").episode_length() == 500


def test_dmc_episode_steps_truncates_earlier_and_is_checked():
    env = envs.make("dmc/pendulum-swingup", episode_steps=40)  # control steps: 20 agent steps
    env.reset(seed=0)
    zero = np.zeros(1, dtype=np.float32)
    truncated = [env.step(zero)[3] for _ in range(20)]
    assert truncated == [False] * 19 + [True]
    for bad in (0, 1001, 2.5, True):  # past 1000 the suite itself ends the episode first
        with pytest.raises(ValueError, match="episode_steps must be an int in \\[1, 1000\\]"):
            envs.make("dmc/pendulum-swingup", episode_steps=bad)


def test_gym_hopper_terminates_when_it_falls():
    env = envs.make("gym/Hopper-v5", seed=0)
    env.reset()
    for _ in range(1000):
        _, _, terminated, truncated, info = env.step(np.ones(3, dtype=np.float32))
        if terminated or truncated:
            break
    assert terminated and not truncated
    assert info["measurements"]["torso_height"].shape == (1,)


def test_gym_reacher_goal_observation_is_the_target_pose_at_rest():
    env = envs.make("gym/Reacher-v5", seed=0)
    u = env.unwrapped
    assert u.goal_conditioned and u.has_success and "goal" in envs.get_spec("gym/Reacher-v5").tags
    for seed in range(5):
        obs, info = env.reset(seed=seed)
        assert not info["success"]
        goal = u.goal_observation()
        assert goal.shape == obs.shape and goal.dtype == np.float32
        np.testing.assert_allclose(goal[-2:], 0.0, atol=1e-6)   # fingertip - target
        np.testing.assert_allclose(goal[6:8], 0.0)              # joint velocities
        np.testing.assert_array_equal(goal[4:6], obs[4:6])      # same target
        np.testing.assert_array_equal(u._env._get_obs().astype(np.float32), obs)  # state restored
        # Driving the joints to the goal pose makes the episode a success.
        u._data.qpos[:2] = u.goal_joint_angles()
        u._data.qvel[:] = 0.0
        _, _, _, _, info = env.step(np.zeros(2, dtype=np.float32))
        assert info["success"]
        assert np.linalg.norm(info["achieved_goal"] - info["desired_goal"]) < u.success_radius
    with pytest.raises(ValueError, match="success_radius"):
        envs.make("gym/Reacher-v5", success_radius=-1.0)


def test_gym_actions_are_rescaled_to_native_bounds():
    env = envs.make("gym/InvertedPendulum-v5")  # native bounds [-3, 3]
    assert env.unwrapped.action_space.high[0] == pytest.approx(3.0)
    env.reset(seed=0)
    env.step(np.array([1.0], dtype=np.float32))
    assert env.unwrapped._data.ctrl[0] == pytest.approx(3.0)
    env.step(np.array([5.0], dtype=np.float32))  # clipped to the bound
    assert env.unwrapped._data.ctrl[0] == pytest.approx(3.0)


def test_seed_argument_makes_first_reset_repeatable():
    a = envs.make("dmc/walker-walk", seed=42)
    b = envs.make("dmc/walker-walk", seed=42)
    c = envs.make("dmc/walker-walk", seed=43)
    oa, ob, oc = a.reset()[0], b.reset()[0], c.reset()[0]
    np.testing.assert_array_equal(oa, ob)
    assert not np.array_equal(oa, oc)
    np.testing.assert_array_equal(a.action_space.sample(), b.action_space.sample())


def test_gymnasium_make_passes_options_through():
    env = gym.make("dmc/cartpole-swingup", obs="pixels", image_size=40)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (40, 40, 3)


def test_dmc_frames_equal_the_suites_own_render():
    from envs.core import FAST_RENDER_FLAGS

    env = envs.make("dmc/walker-walk", seed=0)
    env.reset()
    env.step(env.action_space.sample())
    base = env.unwrapped
    ours = base.render_frame(64, 48)
    suite = base._physics.render(48, 64, camera_id=0, render_flag_overrides=FAST_RENDER_FLAGS)
    np.testing.assert_array_equal(ours, suite)
    env.close()


@pytest.mark.parametrize("env_id, xyz, radius", [("oda/PointMaze-v0", (0.0, 0.0, 0.6), 0.3),  # above the walls
                                                 ("oda/PointMaze-v0", (0.5, 0.5, 0.01), (0.4, 0.005)),  # a floor disc
                                                 ("dmc/reacher-easy", (0.0, 0.0, 0.0), 0.05),
                                                 ("gym/Reacher-v5", (0.0, 0.0, 0.0), 0.05)])
def test_markers_are_drawn_into_the_scene(env_id, xyz, radius):
    env = envs.make(env_id, seed=0)
    env.reset()
    base = env.unwrapped
    plain = base.render_frame(64, 64)
    marked = base.render_frame(64, 64, markers=[(np.array(xyz), (1.0, 0.0, 1.0, 1.0), radius)])
    assert plain.shape == marked.shape and not np.array_equal(plain, marked)
    np.testing.assert_array_equal(base.render_frame(64, 64), plain)  # markers do not persist
    env.close()


def test_dmc_sincos_angles_replace_only_the_unwrapped_hinge_angles():
    """Reacher's shoulder turns without limit: with sincos_angles its raw angle becomes sin, with the
    cos appended, and the rest of the observation is unchanged; bounded tasks are left alone."""
    raw = envs.make("dmc/reacher-easy", seed=3)
    wrapped = envs.make("dmc/reacher-easy", seed=3, sincos_angles=True)
    assert wrapped.observation_space.shape == (raw.observation_space.shape[0] + 1,)
    a, _ = raw.reset(seed=3)
    b, _ = wrapped.reset(seed=3)
    for _ in range(40):  # a constant push winds the shoulder well past pi
        action = np.array([1.0, 0.0], dtype=np.float32)
        a = raw.step(action)[0]
        b = wrapped.step(action)[0]
    assert abs(a[0]) > np.pi  # the suite's own angle is unwrapped
    np.testing.assert_allclose(b[0], np.sin(a[0]), atol=1e-5)
    np.testing.assert_allclose(b[-1], np.cos(a[0]), atol=1e-5)
    np.testing.assert_allclose(b[1:-1], a[1:], atol=1e-6)
    # walker observes its torso pitch as orientations already: nothing to replace
    assert envs.make("dmc/walker-walk", sincos_angles=True).observation_space.shape == (24,)
    with pytest.raises(ValueError, match="sincos_angles"):
        envs.make("dmc/reacher-easy", sincos_angles="yes")
