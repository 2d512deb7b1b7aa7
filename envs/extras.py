"""Optional maze families behind the `OdaEnv` interface: OGBench (``ogbench/<dataset>``) and
Gymnasium-Robotics (``robotics/<Id>``).

Registering imports neither package; building a task imports it and, when it is missing,
raises ``ModuleNotFoundError`` naming the extra to install (``pip install 'oda[ogbench]'`` or
``pip install 'oda[robotics]'``). Rewards, terminations and episode lengths are the packages'
own (OGBench ends an episode at the goal; Gymnasium-Robotics mazes are continuing tasks).

State observations are the env's own vector as float32, never the goal: OGBench's observation
(point: ``qpos`` = xy; ant: ``qpos, qvel``); Gymnasium-Robotics' ``observation`` entry, with the
``achieved_goal`` (torso xy) put back in front for AntMaze, which strips it (so the layout is
the Ant's own ``qpos, qvel, cfrc_ext``). Frames come from a top-down camera over the whole maze.

Reset options are passed through. OGBench: ``task_id`` in 1..5 picks one of the 5 evaluation
tasks (a fixed start cell and goal cell; OGBench adds uniform noise of up to +-1 m per axis to
the start, and to the goal unless built with ``add_noise_to_goal=False``), ``task_info`` a custom
task, ``render_goal`` OGBench's own goal frame. Without either, the build option ``tasks`` says
which task: ``"random"`` (OGBench's own rule: one of the 5 evaluation tasks at random),
``"evaluation"`` (the 5 in turn by the reset seed: task ``seed % 5 + 1``, so N consecutive
evaluation seeds cover each task N/5 times) or ``"anywhere"`` (a start cell and a different goal
cell drawn uniformly from the free cells: for an agent that learns from its own experience and
must not train on the evaluation goals).
OGBench draws from the global ``np.random``; this adapter gives each env its own stream, seeded
by ``reset(seed)``, so episodes are reproducible and the caller's stream is left alone.
Gymnasium-Robotics: ``goal_cell`` / ``reset_cell`` (``(row, col)`` arrays); build kwargs such as
``continuing_task=False`` or ``reward_type="dense"`` go to ``gymnasium.make``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import math
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from envs.core import OdaEnv
from envs.registry import TaskSpec, register
from envs.rendering import FrameRenderer

# Dataset name -> the env's ``max_episode_steps`` (OGBench registers 1000 for point and ant mazes).
OGBENCH_TASKS = {f"{robot}maze-{size}-navigate-v0": 1000
                 for robot in ("point", "ant") for size in ("medium", "large", "giant", "teleport")}
OGBENCH_TASK_RULES = ("random", "evaluation", "anywhere")
# Gymnasium id -> ``max_episode_steps``, as Gymnasium-Robotics registers them.
ROBOTICS_TASKS = {"PointMaze_UMaze-v3": 300, "PointMaze_Open-v3": 300, "PointMaze_Medium-v3": 600,
                  "PointMaze_Large-v3": 800, "AntMaze_UMaze-v5": 700, "AntMaze_Open-v5": 700,
                  "AntMaze_Medium-v5": 1000, "AntMaze_Large-v5": 1000}
_EXTRA = {"ogbench": "ogbench", "gymnasium_robotics": "robotics"}


def import_optional(module: str) -> Any:
    """Import an optional package, or raise ModuleNotFoundError saying which extra provides it."""
    try:
        if module == "gymnasium_robotics":
            # Its import prints an unrelated notice about Adroit reward versions to stderr.
            with contextlib.redirect_stderr(io.StringIO()):
                return importlib.import_module(module)
        return importlib.import_module(module)
    except ImportError as err:
        extra = _EXTRA[module]
        raise ModuleNotFoundError(f"this task needs the optional package {module!r}, which is not installed; "
                                  f"install it with: pip install 'oda[{extra}]'", name=module) from err


class MazeAdapter(OdaEnv):
    """What both maze families share: spaces, info contract, top-down frames, goal observation.

    Subclasses set ``_env`` (the unwrapped env) and implement the ``_goal_*`` hooks and
    ``_maze_geometry``.
    """

    has_success = True
    goal_conditioned = True
    measurement_keys = ("agent_xy", "goal_xy", "goal_distance", "qpos", "qvel")

    def _setup(self, env: gym.Env, state_dim: int, episode_steps: int, dt: float) -> None:
        self._env = env
        self.episode_steps = episode_steps
        self.metadata = {**self.metadata, "render_fps": max(1, round(1.0 / dt))}
        space = env.action_space
        self._setup_spaces(state_dim, gym.spaces.Box(space.low.astype(np.float32), space.high.astype(np.float32)))
        self._renderer = FrameRenderer(env.model)
        self._goal_data = mujoco.MjData(env.model)
        self._goal_cache: tuple[np.ndarray, Any] | None = None
        self._camera = self._top_down_camera(env.model)

    @property
    def inner(self) -> gym.Env:
        """The package's own (unwrapped) env, e.g. for OGBench's ``task_infos``."""
        return self._env

    @property
    def _data(self) -> mujoco.MjData:
        return self._env.data

    def _top_down_camera(self, model: mujoco.MjModel) -> mujoco.MjvCamera:
        """A camera looking straight down at the maze centre, far enough to see all free cells."""
        center, cells, unit, wall_height = self._maze_geometry()
        cam = mujoco.MjvCamera()
        mujoco.mjv_defaultFreeCamera(model, cam)
        cam.lookat[:] = (center[0], center[1], 0.0)
        cam.elevation, cam.azimuth = -90.0, 90.0
        half = (cells - 1) * unit / 2  # keeps half of the outer wall ring in view
        cam.distance = half / math.tan(math.radians(model.vis.global_.fovy) / 2) + wall_height
        return cam

    def _maze_geometry(self) -> tuple[np.ndarray, int, float, float]:
        """Maze centre xy, cells along its longer side, cell size and wall height (m)."""
        raise NotImplementedError

    def _goal_xy(self) -> np.ndarray:
        raise NotImplementedError

    def _goal_qpos_qvel(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _goal_state(self) -> np.ndarray:
        """The state vector at the goal; ``_goal_data`` already holds the goal pose."""
        raise NotImplementedError

    def _info(self, inner: dict[str, Any], success: bool) -> dict[str, Any]:
        d = self._data
        agent, goal = d.qpos[:2].astype(np.float64), np.array(self._goal_xy(), dtype=np.float64)
        measurements = {"agent_xy": agent.copy(), "goal_xy": goal.copy(),
                        "goal_distance": np.array([np.linalg.norm(agent - goal)]), "qpos": d.qpos.copy(),
                        "qvel": d.qvel.copy()}
        return {**inner, "measurements": measurements, "safety": {}, "success": bool(success),
                "desired_goal": goal, "achieved_goal": agent}

    def goal_observation(self) -> Any:
        """The observation with the agent at the current goal (state, frame, or both)."""
        goal = np.array(self._goal_xy(), dtype=np.float64)
        if self._goal_cache is None or not np.array_equal(self._goal_cache[0], goal):
            self._load_goal_data()
            state = self._goal_state().astype(np.float32)
            if self.obs_mode == "state":
                value: Any = state
            else:
                frame = self._renderer.render(self._goal_data, self.image_size, self.image_size, self._camera)
                value = frame if self.obs_mode == "pixels" else {"state": state, "pixels": frame}
            self._goal_cache = (goal, value)
        value = self._goal_cache[1]
        return {k: v.copy() for k, v in value.items()} if isinstance(value, dict) else value.copy()

    def _load_goal_data(self) -> mujoco.MjData:
        """Put the agent at the goal in a scratch MjData (the live simulation is never touched)."""
        qpos, qvel = self._goal_qpos_qvel()
        g = self._goal_data
        g.qpos[:], g.qvel[:] = qpos, qvel
        mujoco.mj_forward(self._env.model, g)
        return g

    def _seed_from(self, seed: int | None) -> int | None:
        """The seed this reset uses (``seed_next_reset`` included); also seeds ``self.np_random``."""
        if seed is None and self._next_seed is not None:
            seed = self._next_seed
        OdaEnv.reset(self, seed=seed)
        self._goal_cache = None
        return seed

    def render_frame(self, width: int, height: int, markers: list | None = None) -> np.ndarray:
        return self._renderer.render(self._data, width, height, self._camera, markers)

    def close(self) -> None:
        self._renderer.close()
        self._env.close()


class OGBenchMazeEnv(MazeAdapter):
    """An OGBench locomotion maze (navigate tasks), built without downloading any dataset."""

    def __init__(self, dataset_name: str, obs: str = "state", image_size: int = 64,
                 render_mode: str | None = "rgb_array", tasks: str = "random", **env_kwargs: Any):
        super().__init__(obs=obs, image_size=image_size, render_mode=render_mode)
        if tasks not in OGBENCH_TASK_RULES:
            raise ValueError(f"tasks={tasks!r}: must be one of {OGBENCH_TASK_RULES}")
        self.tasks = tasks
        ogbench = import_optional("ogbench")
        for key in ("ob_type", "use_oracle_rep", "render_mode"):
            if key in env_kwargs:
                raise ValueError(f"{key!r} is not supported here; use obs='state'|'pixels'|'both'")
        wrapped = ogbench.make_env_and_datasets(dataset_name, env_only=True, **env_kwargs)
        self.dataset_name = dataset_name
        env = wrapped.unwrapped
        self._global_rng_state: dict | None = None
        self._uses_rng_in_step = env._teleport_info is not None  # noqa: SLF001 (teleports draw from np.random)
        self._goal_ob = env.get_ob().astype(np.float64)
        self._setup(env, int(np.prod(env.observation_space.shape)), int(wrapped.spec.max_episode_steps), env.dt)

    def _maze_geometry(self) -> tuple[np.ndarray, int, float, float]:
        env = self._env
        rows, cols = env.maze_map.shape
        center = np.asarray(env.ij_to_xy(((rows - 1) / 2, (cols - 1) / 2)))
        return center, max(rows, cols), env._maze_unit, env._maze_height * env._maze_unit  # noqa: SLF001

    @contextlib.contextmanager
    def _own_global_rng(self):
        """Run OGBench code with this env's own ``np.random`` stream, leaving the caller's untouched."""
        if self._global_rng_state is None:
            self._global_rng_state = np.random.RandomState(int(self.np_random.integers(2**32))).get_state()
        outer = np.random.get_state()
        np.random.set_state(self._global_rng_state)
        try:
            yield
        finally:
            self._global_rng_state = np.random.get_state()
            np.random.set_state(outer)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        seed = self._seed_from(seed)
        if seed is not None:
            self._global_rng_state = np.random.RandomState(seed % 2**32).get_state()
            self._env.action_space.seed(seed)  # OGBench takes random steps before computing the goal pose
        options = self._task_options(seed, options)
        with self._own_global_rng():
            ob, inner = self._env.reset(seed=seed, options=options)
        self._goal_ob = np.asarray(inner["goal"], dtype=np.float64)
        return self._observe(ob.astype(np.float32)), self._info(inner, self._env.compute_success())

    def _task_options(self, seed: int | None, options: dict | None) -> dict:
        """The reset options with the task the ``tasks`` rule picks, unless the caller named one."""
        options = dict(options or {})
        if "task_id" in options or "task_info" in options or self.tasks == "random":
            return options
        if self.tasks == "evaluation":
            if seed is None:
                raise ValueError("tasks='evaluation' picks the task by the reset seed: reset(seed=...) first")
            options["task_id"] = seed % self._env.num_tasks + 1
            return options
        free = np.argwhere(self._env.maze_map == 0)
        start, goal = self.np_random.choice(len(free), size=2, replace=False)
        init_ij, goal_ij = tuple(int(v) for v in free[start]), tuple(int(v) for v in free[goal])
        options["task_info"] = {"task_name": "anywhere", "init_ij": init_ij, "goal_ij": goal_ij,
                                "init_xy": self._env.ij_to_xy(init_ij), "goal_xy": self._env.ij_to_xy(goal_ij)}
        return options

    def step(self, action: np.ndarray):
        if self._uses_rng_in_step:
            with self._own_global_rng():
                ob, reward, terminated, truncated, inner = self._env.step(action)
        else:
            ob, reward, terminated, truncated, inner = self._env.step(action)
        info = self._info(inner, bool(inner["success"]))
        return self._observe(ob.astype(np.float32)), float(reward), terminated, truncated, info

    def _goal_xy(self) -> np.ndarray:
        return self._env.cur_goal_xy

    def _goal_qpos_qvel(self) -> tuple[np.ndarray, np.ndarray]:
        # OGBench's goal observation is qpos (point) or qpos, qvel (ant) with the agent at the goal.
        nq, nv = self._data.qpos.size, self._data.qvel.size
        g = self._goal_ob
        return g[:nq], (g[nq:nq + nv] if g.size >= nq + nv else np.zeros(nv))

    def _goal_state(self) -> np.ndarray:
        return self._goal_ob


class RoboticsMazeEnv(MazeAdapter):
    """A Gymnasium-Robotics PointMaze / AntMaze (a GoalEnv with Dict observations)."""

    def __init__(self, gym_id: str, obs: str = "state", image_size: int = 64,
                 render_mode: str | None = "rgb_array", **env_kwargs: Any):
        super().__init__(obs=obs, image_size=image_size, render_mode=render_mode)
        robotics = import_optional("gymnasium_robotics")
        gym.register_envs(robotics)
        if "render_mode" in env_kwargs:
            raise ValueError("'render_mode' is not supported here; frames come from obs='pixels'|'both'")
        wrapped = gym.make(gym_id, disable_env_checker=True, **env_kwargs)
        self.gym_id = gym_id
        env = wrapped.unwrapped
        # AntMaze strips the torso xy from `observation`; point mazes keep it in qpos.
        self._robot = getattr(env, "ant_env", None) or env.point_env
        self._prepend_xy = hasattr(env, "ant_env")
        dim = int(env.observation_space["observation"].shape[0]) + (2 if self._prepend_xy else 0)
        self._setup(env, dim, int(wrapped.spec.max_episode_steps), self._robot.dt)

    def _maze_geometry(self) -> tuple[np.ndarray, int, float, float]:
        maze = self._env.maze
        return (np.zeros(2), max(maze.map_length, maze.map_width), maze.maze_size_scaling,
                maze.maze_height * maze.maze_size_scaling)

    def _state(self, ob: dict[str, np.ndarray]) -> np.ndarray:
        parts = [ob["achieved_goal"], ob["observation"]] if self._prepend_xy else [ob["observation"]]
        return np.concatenate(parts).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        seed = self._seed_from(seed)
        ob, inner = self._env.reset(seed=seed, options=options)
        return self._observe(self._state(ob)), self._info(inner, inner["success"])

    def step(self, action: np.ndarray):
        ob, reward, terminated, truncated, inner = self._env.step(action)
        info = self._info(inner, inner["success"])
        return self._observe(self._state(ob)), float(reward), terminated, truncated, info

    def _goal_xy(self) -> np.ndarray:
        return self._env.goal

    def _goal_qpos_qvel(self) -> tuple[np.ndarray, np.ndarray]:
        # The robot's initial pose, at rest, moved to the goal.
        qpos = self._robot.init_qpos.copy()
        qpos[:2] = self._env.goal
        return qpos, np.zeros_like(self._robot.init_qvel)

    def _goal_state(self) -> np.ndarray:
        """The robot's own observation function evaluated on the goal pose."""
        robot, live = self._robot, self._robot.data
        robot.data = self._goal_data
        try:
            raw = robot._get_obs()  # noqa: SLF001
        finally:
            robot.data = live
        return np.asarray(raw[0] if isinstance(raw, tuple) else raw)  # point returns (obs, info)


def _register() -> None:
    for name, steps in OGBENCH_TASKS.items():
        def og_factory(obs: str = "state", image_size: int = 64, render_mode: str | None = "rgb_array",
                       _name: str = name, **kwargs: Any) -> OGBenchMazeEnv:
            return OGBenchMazeEnv(_name, obs=obs, image_size=image_size, render_mode=render_mode, **kwargs)

        register(TaskSpec(f"ogbench/{name}", "ogbench", og_factory, ("goal", "navigation", "ogbench"),
                          episode_steps=steps, requires="ogbench",
                          description=f"OGBench {name} (reset option task_id=1..5: evaluation goals)"))
    for gym_id, steps in ROBOTICS_TASKS.items():
        def rb_factory(obs: str = "state", image_size: int = 64, render_mode: str | None = "rgb_array",
                       _id: str = gym_id, **kwargs: Any) -> RoboticsMazeEnv:
            return RoboticsMazeEnv(_id, obs=obs, image_size=image_size, render_mode=render_mode, **kwargs)

        register(TaskSpec(f"robotics/{gym_id}", "robotics", rb_factory, ("goal", "navigation", "robotics"),
                          episode_steps=steps, requires="gymnasium-robotics",
                          description=f"Gymnasium-Robotics {gym_id} (sparse reward, continuing task)"))


_register()
