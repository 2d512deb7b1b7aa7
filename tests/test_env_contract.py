"""One contract, run over every registered task (the dm_control suite's style)."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs

ALL_IDS = [spec.id for spec in envs.list_specs() if not spec.requires]


def _rollout(env: gym.Env, seed: int, actions: np.ndarray):
    obs, _ = env.reset(seed=seed)
    trace = [obs]
    for a in actions:
        obs, reward, terminated, truncated, _ = env.step(a)
        trace += [obs, reward, terminated]
        if terminated or truncated:
            break
    return trace


def _check_info(info: dict, base: envs.OdaEnv) -> None:
    assert set(info["measurements"]) == set(base.measurement_keys)
    for key, value in info["measurements"].items():
        assert isinstance(value, np.ndarray) and value.ndim == 1, key
        assert np.isfinite(value).all(), key
    assert set(info["safety"]) == set(base.safety_keys)
    assert all(isinstance(v, bool) for v in info["safety"].values())
    assert ("success" in info) == base.has_success
    if base.has_success:
        assert isinstance(info["success"], bool)
    if base.goal_conditioned:
        assert np.isfinite(info["desired_goal"]).all() and np.isfinite(info["achieved_goal"]).all()


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_state_contract(env_id):
    env = envs.make(env_id)
    base = env.unwrapped
    assert isinstance(base, envs.OdaEnv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env, skip_render_check=True)

    assert env.action_space.dtype == np.float32
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    actions = np.random.default_rng(0).uniform(-1, 1, size=(5, *env.action_space.shape)).astype(np.float32)
    first, second = _rollout(env, 7, actions), _rollout(env, 7, actions)
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)

    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs) and obs.dtype == np.float32
    _check_info(info, base)
    keys = set(info["measurements"])
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        assert env.observation_space.contains(obs) and np.isfinite(obs).all()
        assert np.isfinite(reward)
        _check_info(info, base)
        assert set(info["measurements"]) == keys
        if terminated or truncated:
            break

    env.reset(seed=0)
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.full(env.action_space.shape, np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(env.action_space.shape[0] + 1, dtype=np.float32))
    env.close()


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_pixels_contract(env_id):
    env = envs.make(env_id, obs="both", image_size=32, seed=1)
    base = env.unwrapped
    obs, info = env.reset()
    assert env.observation_space.contains(obs)
    assert obs["pixels"].shape == (32, 32, 3) and obs["pixels"].dtype == np.uint8
    assert obs["pixels"].std() > 0, "blank frame"
    obs, *_ = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs)
    frame = env.render()
    assert frame.shape == (32, 32, 3) and frame.dtype == np.uint8
    assert base.render_frame(48, 40).shape == (40, 48, 3)
    if base.goal_conditioned:
        goal = base.goal_observation()
        assert env.observation_space.contains(goal)
        after, *_ = env.step(np.zeros(env.action_space.shape, dtype=np.float32))
        assert not np.array_equal(goal["state"], after["state"]) or info.get("success")
    env.close()


@pytest.mark.parametrize("env_id", ALL_IDS[::7])
def test_gymnasium_make_matches_envs_make(env_id):
    a = gym.make(env_id)
    b = envs.make(env_id)
    oa, _ = a.reset(seed=11)
    ob, _ = b.reset(seed=11)
    np.testing.assert_array_equal(oa, ob)
    assert a.spec.id == env_id
    a.close()
    b.close()
