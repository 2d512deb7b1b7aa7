"""Our own MuJoCo tasks, split the dm_control way: a `Physics` with named accessors and a
`Task` with the logic (initial state, observation, reward, success, safety, goal). `TaskEnv`
composes the two behind the `OdaEnv` interface, so a new task is a Physics subclass, a Task
subclass and a registration line.
"""

from __future__ import annotations

import abc
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from envs.core import OdaEnv
from envs.rendering import FrameRenderer


class Physics:
    """A MuJoCo model and its data, with the accessors tasks need. Subclasses add named ones."""

    def __init__(self, xml: str, n_substeps: int = 1):
        self.model = mujoco.MjModel.from_xml_string(xml)
        self.data = mujoco.MjData(self.model)
        self.n_substeps = n_substeps
        self._renderer = FrameRenderer(self.model)

    @property
    def control_timestep(self) -> float:
        return float(self.model.opt.timestep) * self.n_substeps

    def reset(self) -> None:
        mujoco.mj_resetData(self.model, self.data)

    def forward(self) -> None:
        mujoco.mj_forward(self.model, self.data)

    def step(self, ctrl: np.ndarray) -> None:
        self.data.ctrl[:] = ctrl
        mujoco.mj_step(self.model, self.data, nstep=self.n_substeps)

    def get_state(self) -> tuple[np.ndarray, ...]:
        d = self.data
        return d.qpos.copy(), d.qvel.copy(), d.act.copy(), d.ctrl.copy(), np.array([d.time])

    def set_state(self, state: tuple[np.ndarray, ...]) -> None:
        d = self.data
        d.qpos[:], d.qvel[:], d.act[:], d.ctrl[:], (d.time,) = state
        self.forward()

    def body_xy(self, name: str) -> np.ndarray:
        return self.data.body(name).xpos[:2].copy()

    def site_xy(self, name: str) -> np.ndarray:
        return self.data.site(name).xpos[:2].copy()

    def render(self, width: int, height: int, camera: str | int = -1, markers: list | None = None,
               show_goal: bool = True) -> np.ndarray:
        """A uint8 ``height x width x 3`` frame (shadows, reflections and skybox off)."""
        return self._renderer.render(self.data, width, height, camera, markers, show_goal)

    def close(self) -> None:
        self._renderer.close()


class Task(abc.ABC):
    """The logic of a task; it reads and sets the physics but never steps it."""

    measurement_keys: tuple[str, ...] = ()
    safety_keys: tuple[str, ...] = ()
    has_success: bool = False
    goal_conditioned: bool = False
    camera: str | int = -1
    #: simulator control steps per episode
    episode_steps: int = 1000

    @abc.abstractmethod
    def make_physics(self) -> Physics:
        """Build the MJCF model (in code) and return its Physics."""

    @abc.abstractmethod
    def action_bounds(self, physics: Physics) -> tuple[np.ndarray, np.ndarray]:
        """Low and high bounds of the native action."""

    @abc.abstractmethod
    def initialize_episode(self, physics: Physics, rng: np.random.Generator, options: dict) -> None:
        """Set the initial state and sample the goal (``options`` may fix them)."""

    @abc.abstractmethod
    def get_observation(self, physics: Physics) -> np.ndarray:
        """The float32 state observation."""

    def get_reward(self, physics: Physics) -> float:
        return float(self.is_success(physics)) if self.has_success else 0.0

    def get_measurements(self, physics: Physics) -> dict[str, np.ndarray]:
        return {}

    def get_safety(self, physics: Physics) -> dict[str, bool]:
        return {}

    def is_success(self, physics: Physics) -> bool:
        return False

    def set_goal_state(self, physics: Physics) -> None:
        """Put the physics in the goal configuration (for ``goal_observation``)."""
        raise NotImplementedError(f"{type(self).__name__} is not goal-conditioned")

    def desired_goal(self, physics: Physics) -> np.ndarray:
        raise NotImplementedError

    def achieved_goal(self, physics: Physics) -> np.ndarray:
        raise NotImplementedError

    def safe_action(self, state: np.ndarray) -> np.ndarray | None:
        """The safe fallback in [-1, 1] from the state observation (None: no actuation)."""
        return None

    def play_action(self, physics: Physics, rng: np.random.Generator) -> np.ndarray | None:
        """A goal-blind exploration action in [-1, 1] (``OdaEnv.play_action``); None: no play policy."""
        return None

    def before_step(self, physics: Physics, action: np.ndarray) -> None:  # noqa: B027
        """Hook run before the physics steps (e.g. to record speeds for safety checks)."""

    def after_step(self, physics: Physics) -> None:  # noqa: B027
        """Hook run after the physics steps (e.g. to accumulate safety events)."""


class TaskEnv(OdaEnv):
    """A `Task` and its `Physics` behind the `OdaEnv` interface."""

    def __init__(self, task: Task, obs: str = "state", image_size: int = 64,
                 render_mode: str | None = "rgb_array", terminate_on_success: bool = False,
                 goal_in_pixels: bool = False):
        super().__init__(obs=obs, image_size=image_size, render_mode=render_mode)
        self.task = task
        self.goal_in_pixels = bool(goal_in_pixels)  # pixel observations show the goal marks
        self.physics = task.make_physics()
        self.measurement_keys = task.measurement_keys
        self.safety_keys = task.safety_keys
        self.has_success = task.has_success
        self.goal_conditioned = task.goal_conditioned
        self.episode_steps = task.episode_steps
        self.terminate_on_success = terminate_on_success
        self.metadata = {**self.metadata, "render_fps": round(1.0 / self.physics.control_timestep)}
        low, high = task.action_bounds(self.physics)
        self._action_low = np.asarray(low, dtype=np.float32)
        self._action_high = np.asarray(high, dtype=np.float32)
        self.physics.reset()
        self.physics.forward()
        state_dim = task.get_observation(self.physics).shape[0]
        self._setup_spaces(state_dim, gym.spaces.Box(self._action_low, self._action_high, dtype=np.float32))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.physics.reset()
        self.task.initialize_episode(self.physics, self.np_random, dict(options or {}))
        self.physics.forward()
        return self._observe(self.task.get_observation(self.physics)), self._info()

    def step(self, action: np.ndarray):
        action = np.minimum(np.maximum(np.asarray(action, dtype=np.float64), self._action_low), self._action_high)
        self.task.before_step(self.physics, action)
        self.physics.step(action)
        self.task.after_step(self.physics)
        info = self._info()
        reward = self.task.get_reward(self.physics)
        terminated = bool(self.terminate_on_success and info.get("success", False))
        return self._observe(self.task.get_observation(self.physics)), reward, terminated, False, info

    def _info(self) -> dict[str, Any]:
        task, physics = self.task, self.physics
        info: dict[str, Any] = {
            "measurements": task.get_measurements(physics),
            "safety": task.get_safety(physics),
        }
        if self.has_success:
            info["success"] = bool(task.is_success(physics))
        if self.goal_conditioned:
            info["desired_goal"] = task.desired_goal(physics)
            info["achieved_goal"] = task.achieved_goal(physics)
        return info

    def goal_observation(self) -> Any:
        """What the observation would be with the task at its goal; the state is restored."""
        saved = self.physics.get_state()
        self.task.set_goal_state(self.physics)
        self.physics.forward()
        try:
            return self._observe(self.task.get_observation(self.physics))
        finally:
            self.physics.set_state(saved)

    def safe_action(self, state: np.ndarray) -> np.ndarray:
        action = self.task.safe_action(np.asarray(state, dtype=np.float32))
        return super().safe_action(state) if action is None else np.clip(action, -1.0, 1.0).astype(np.float32)

    def play_action(self, rng: np.random.Generator) -> np.ndarray | None:
        action = self.task.play_action(self.physics, rng)
        return None if action is None else np.clip(action, -1.0, 1.0).astype(np.float32)

    def render_frame(self, width: int, height: int, markers: list | None = None) -> np.ndarray:
        return self.physics.render(width, height, camera=self.task.camera, markers=markers)

    def observation_frame(self) -> np.ndarray:
        return self.physics.render(self.image_size, self.image_size, camera=self.task.camera,
                                   show_goal=self.goal_in_pixels)

    def close(self) -> None:
        self.physics.close()
