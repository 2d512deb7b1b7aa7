"""Optional maze families (OGBench, Gymnasium-Robotics): the env contract on a few ids, the
error when a package is missing, OGBench's 5 evaluation tasks and goal observations."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from test_env_contract import _check_info, _rollout

import envs
import envs.extras  # noqa: F401  (registers ogbench/* and robotics/*, importing neither package)
from envs.extras import OGBENCH_TASKS, ROBOTICS_TASKS

OG_POINT, OG_ANT = "ogbench/pointmaze-medium-navigate-v0", "ogbench/antmaze-medium-navigate-v0"
RB_POINT, RB_ANT = "robotics/PointMaze_UMaze-v3", "robotics/AntMaze_UMaze-v5"
ALL_EXTRA_IDS = [f"ogbench/{n}" for n in OGBENCH_TASKS] + [f"robotics/{n}" for n in ROBOTICS_TASKS]
_PACKAGE = {"ogbench": "ogbench", "robotics": "gymnasium_robotics"}


def _need(env_id: str) -> None:
    pytest.importorskip(_PACKAGE[env_id.split("/")[0]])


def _set_live_state(base: envs.OdaEnv, qpos: np.ndarray, qvel: np.ndarray) -> None:
    """Move the live simulation (OGBench env, or the robot inside a Gymnasium-Robotics maze)."""
    inner = base.inner
    robot = getattr(inner, "ant_env", None) or getattr(inner, "point_env", None) or inner
    robot.set_state(qpos, qvel)


def test_registration_imports_no_optional_package():
    code = ("import sys, envs, envs.extras; n = sum(1 for s in envs.list_specs() if s.requires); "
            "assert 'ogbench' not in sys.modules and 'gymnasium_robotics' not in sys.modules; print(n)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=root)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[-1]) == len(ALL_EXTRA_IDS)
    spec = envs.get_spec(OG_POINT)
    assert (spec.family, spec.requires, spec.tags) == ("ogbench", "ogbench", ("goal", "navigation", "ogbench"))
    assert (envs.get_spec(RB_POINT).family, envs.get_spec(RB_POINT).requires) == ("robotics", "gymnasium-robotics")


@pytest.mark.parametrize(("env_id", "module", "extra"), [(OG_POINT, "ogbench", "ogbench"),
                                                          (RB_ANT, "gymnasium_robotics", "robotics")])
def test_missing_package_names_the_extra(monkeypatch, env_id, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(ModuleNotFoundError, match=rf"pip install 'oda\[{extra}\]'"):
        envs.make(env_id)


@pytest.mark.parametrize("env_id", ALL_EXTRA_IDS)
def test_documented_episode_steps_match_the_package(env_id):
    _need(env_id)
    base = envs.make(env_id).unwrapped  # reads max_episode_steps from the package's own spec
    assert envs.get_spec(env_id).episode_steps == base.episode_steps
    base.close()


@pytest.mark.parametrize("env_id", [OG_POINT, OG_ANT, RB_POINT, RB_ANT])
def test_state_contract(env_id):
    _need(env_id)
    env = envs.make(env_id)
    base = env.unwrapped
    assert isinstance(base, envs.OdaEnv) and base.goal_conditioned and base.has_success
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env, skip_render_check=True)
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    actions = np.random.default_rng(0).uniform(-1, 1, size=(5, *env.action_space.shape)).astype(np.float32)
    np.random.seed(0)
    expected_global = np.random.rand()
    np.random.seed(0)
    first, second = _rollout(env, 7, actions), _rollout(env, 7, actions)
    assert np.random.rand() == expected_global, "the env consumed the global np.random stream"
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)

    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs) and obs.dtype == np.float32
    _check_info(info, base)
    assert info["desired_goal"].shape == info["achieved_goal"].shape == (2,)
    assert not np.allclose(obs[:2], info["desired_goal"]), "the goal must not be in the state"
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        assert env.observation_space.contains(obs) and np.isfinite(obs).all() and np.isfinite(reward)
        _check_info(info, base)
        np.testing.assert_allclose(info["measurements"]["goal_distance"],
                                   [np.linalg.norm(info["achieved_goal"] - info["desired_goal"])])
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.full(env.action_space.shape, np.nan, dtype=np.float32))
    env.close()


@pytest.mark.parametrize("env_id", [OG_POINT, OG_ANT, RB_POINT])
def test_pixels_contract(env_id):
    _need(env_id)
    env = envs.make(env_id, obs="both", image_size=32, seed=1)
    base = env.unwrapped
    obs, info = env.reset()
    assert env.observation_space.contains(obs) and obs["pixels"].shape == (32, 32, 3)
    assert obs["pixels"].std() > 0, "blank frame"
    obs, *_ = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs)
    assert env.render().shape == (32, 32, 3) and base.render_frame(48, 40).shape == (40, 48, 3)
    goal = base.goal_observation()
    assert env.observation_space.contains(goal)
    assert not np.array_equal(goal["pixels"], obs["pixels"])
    env.close()


def test_ogbench_task_ids_give_the_five_evaluation_goals():
    pytest.importorskip("ogbench")
    env = envs.make(OG_POINT)
    base = env.unwrapped
    cells = [np.asarray(t["goal_xy"]) for t in base.inner.task_infos]
    assert len(cells) == 5 and len({tuple(c) for c in cells}) == 5
    goals = []
    for task_id in range(1, 6):
        _, info = env.reset(seed=task_id, options={"task_id": task_id})
        goals.append(info["desired_goal"])
        # OGBench's protocol adds uniform noise of +-maze_unit/4 = 1 m to the task's goal cell centre.
        assert np.all(np.abs(info["desired_goal"] - cells[task_id - 1]) <= 1.0)
    assert len({tuple(np.round(g, 6)) for g in goals}) == 5
    env.close()

    fixed = envs.make(OG_POINT, add_noise_to_goal=False)
    for task_id in (1, 5):
        for seed in (0, 1):
            _, info = fixed.reset(seed=seed, options={"task_id": task_id})
            np.testing.assert_array_equal(info["desired_goal"], cells[task_id - 1])
    fixed.close()


def test_ogbench_task_rules_evaluation_in_turn_and_anywhere_off_the_evaluation_tasks():
    pytest.importorskip("ogbench")
    turn = envs.make(OG_POINT, tasks="evaluation")
    ids = []
    for seed in range(1_000_000, 1_000_010):
        turn.reset(seed=seed)
        ids.append(turn.unwrapped.inner.cur_task_id)
    assert ids == [1, 2, 3, 4, 5] * 2
    with pytest.raises(ValueError, match="reset seed"):
        envs.make(OG_POINT, tasks="evaluation").reset()
    # a caller's own task still wins over the rule
    turn.reset(seed=1_000_000, options={"task_id": 3})
    assert turn.unwrapped.inner.cur_task_id == 3
    turn.close()

    anywhere = envs.make(OG_POINT, tasks="anywhere")
    inner = anywhere.unwrapped.inner
    free = {tuple(c) for c in np.argwhere(inner.maze_map == 0)}
    pairs = set()
    for seed in range(40):
        obs, info = anywhere.reset(seed=seed)
        task = inner.cur_task_info
        assert inner.cur_task_id is None and task["init_ij"] in free and task["goal_ij"] in free
        assert task["init_ij"] != task["goal_ij"]
        # OGBench's noise of up to 1 m per axis around the drawn cells
        assert np.all(np.abs(obs - np.asarray(inner.ij_to_xy(task["init_ij"]))) <= 1.0 + 1e-6)
        assert np.all(np.abs(info["desired_goal"] - np.asarray(inner.ij_to_xy(task["goal_ij"]))) <= 1.0 + 1e-6)
        pairs.add((task["init_ij"], task["goal_ij"]))
    assert len(pairs) >= 35  # drawn over the whole maze, not the 5 evaluation tasks
    again, _ = anywhere.reset(seed=7)
    first, _ = envs.make(OG_POINT, tasks="anywhere").reset(seed=7)
    np.testing.assert_array_equal(again, first)  # seeded
    anywhere.close()
    with pytest.raises(ValueError, match="tasks='everywhere'"):
        envs.make(OG_POINT, tasks="everywhere")


@pytest.mark.parametrize("env_id", [OG_POINT, OG_ANT, RB_POINT])
def test_goal_observation_is_the_agent_at_the_goal(env_id):
    _need(env_id)
    env = envs.make(env_id, obs="both", image_size=32)
    base = env.unwrapped
    obs, info = env.reset(seed=0, options={"task_id": 2} if env_id.startswith("ogbench") else None)
    assert not info["success"]
    goal = base.goal_observation()
    if env_id.startswith("ogbench"):
        np.testing.assert_array_equal(goal["state"], info["goal"].astype(np.float32))  # OGBench's own
    np.testing.assert_allclose(goal["state"][:2], info["desired_goal"], atol=1e-6)
    np.testing.assert_array_equal(env.unwrapped.goal_observation()["pixels"], goal["pixels"])  # cached, stable
    np.testing.assert_array_equal(base.render(), obs["pixels"])  # the live simulation was not moved

    nq, nv = base.inner.data.qpos.size, base.inner.data.qvel.size
    state = goal["state"].astype(np.float64)
    _set_live_state(base, state[:nq], state[nq:nq + nv] if state.size >= nq + nv else np.zeros(nv))
    np.testing.assert_array_equal(base.render(), goal["pixels"])
    obs, _, terminated, _, info = env.step(np.zeros(env.action_space.shape, dtype=np.float32))
    assert info["success"] and info["measurements"]["goal_distance"][0] < 0.45
    assert terminated == env_id.startswith("ogbench")  # OGBench ends at the goal; robotics mazes continue
    env.close()


def test_ogbench_teleport_is_seeded_by_reset():
    """Teleport exits are drawn from np.random in OGBench; here they follow the reset seed."""
    pytest.importorskip("ogbench")
    env = envs.make("ogbench/pointmaze-teleport-navigate-v0")
    base = env.unwrapped
    portal = np.asarray(base.inner._teleport_info["teleport_in_xys"][0])  # noqa: SLF001

    def exits(seed: int) -> list[tuple[float, ...]]:
        env.reset(seed=seed, options={"task_id": 1})
        out = []
        for _ in range(6):
            base.inner.set_xy(portal)
            _, _, _, _, info = env.step(np.zeros(2, dtype=np.float32))
            out.append(tuple(np.round(info["measurements"]["agent_xy"], 6)))
        return out

    first = exits(5)
    assert all(np.linalg.norm(np.subtract(o, portal)) > 2.0 for o in first)  # it did teleport
    assert exits(5) == first and exits(6) != first
    env.close()
