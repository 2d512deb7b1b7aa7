"""Gymnasium's MuJoCo v5 tasks behind the `OdaEnv` interface: ids ``gym/<Id>``.

Rewards and terminations are Gymnasium's own (Hopper, Walker2d and Ant terminate when
unhealthy; every task is truncated at its registered ``max_episode_steps``). Gymnasium's info
is kept and the contract keys are added. Frames use the task's default camera settings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from envs.core import OdaEnv, measurement
from envs.registry import TaskSpec, register
from envs.rendering import FrameRenderer

GYM_TASKS = ("Reacher-v5", "Pusher-v5", "InvertedPendulum-v5", "InvertedDoublePendulum-v5", "HalfCheetah-v5",
             "Hopper-v5", "Walker2d-v5", "Swimmer-v5", "Ant-v5", "Humanoid-v5")


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return measurement(float(np.linalg.norm(a - b)))


# Named physical quantities per task (SI units), from MjData and Gymnasium's step info.
_MEASUREMENTS: dict[str, Callable[[Any, dict], dict[str, np.ndarray]]] = {
    "Reacher": lambda d, i: {"fingertip_xy": d.body("fingertip").xpos[:2].copy(),
                             "target_xy": d.body("target").xpos[:2].copy(),
                             "fingertip_to_target_dist": _dist(d.body("fingertip").xpos[:2],
                                                               d.body("target").xpos[:2])},
    "Pusher": lambda d, i: {"tip_xyz": d.body("tips_arm").xpos.copy(), "object_xyz": d.body("object").xpos.copy(),
                            "goal_xyz": d.body("goal").xpos.copy(),
                            "object_to_goal_dist": _dist(d.body("object").xpos, d.body("goal").xpos)},
    "InvertedPendulum": lambda d, i: {"cart_position": measurement(d.qpos[0]), "pole_angle": measurement(d.qpos[1])},
    "HalfCheetah": lambda d, i: {"x_velocity": measurement(i.get("x_velocity", 0.0))},
    "Hopper": lambda d, i: {"torso_height": measurement(d.qpos[1]), "torso_angle": measurement(d.qpos[2]),
                            "x_velocity": measurement(i.get("x_velocity", 0.0))},
    "Walker2d": lambda d, i: {"torso_height": measurement(d.qpos[1]), "torso_angle": measurement(d.qpos[2]),
                              "x_velocity": measurement(i.get("x_velocity", 0.0))},
    "Ant": lambda d, i: {"torso_xyz": d.qpos[:3].copy(),
                         "xy_velocity": measurement(i.get("x_velocity", 0.0), i.get("y_velocity", 0.0))},
}


class GymMujocoEnv(OdaEnv):
    """One Gymnasium MuJoCo task (the unwrapped env; `envs.make` adds the time limit)."""

    def __init__(self, gym_id: str, obs: str = "state", image_size: int = 64,
                 render_mode: str | None = "rgb_array", **gym_kwargs: Any):
        super().__init__(obs=obs, image_size=image_size, render_mode=render_mode)
        self.gym_id = gym_id
        self._env = gym.make(gym_id, disable_env_checker=True, **gym_kwargs).unwrapped
        self._data = self._env.data
        self.episode_steps = int(gym.spec(gym_id).max_episode_steps or 1000)
        self.metadata = {**self.metadata, "render_fps": self._env.metadata.get("render_fps", 30)}
        self._measure = _MEASUREMENTS.get(gym_id.split("-v")[0])
        self.measurement_keys = tuple(self._info({})["measurements"])
        space = self._env.action_space
        self._setup_spaces(int(np.prod(self._env.observation_space.shape)),
                           gym.spaces.Box(space.low.astype(np.float32), space.high.astype(np.float32)))
        self._renderer = FrameRenderer(self._env.model)
        self._camera = self._make_camera()

    def _make_camera(self) -> mujoco.MjvCamera:
        """A free camera set up as Gymnasium's default camera config says, tracking if asked."""
        model = self._env.model
        cam = mujoco.MjvCamera()
        mujoco.mjv_defaultFreeCamera(model, cam)
        config = getattr(self._env.mujoco_renderer, "default_cam_config", None) or {}
        for key, value in config.items():
            if isinstance(value, np.ndarray):
                getattr(cam, key)[:] = value
            else:
                setattr(cam, key, value)
        if config.get("trackbodyid", -1) > 0:
            cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING
        return cam

    def _info(self, inner: dict[str, Any]) -> dict[str, Any]:
        d = self._data
        measurements = {"qpos": d.qpos.copy(), "qvel": d.qvel.copy()}
        if self._measure:
            measurements.update(self._measure(d, inner))
        return {**inner, "measurements": measurements, "safety": {}}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        seed = super().reset(seed=seed)
        obs, inner = self._env.reset(seed=seed, options=options)
        return self._observe(obs.astype(np.float32)), self._info(inner)

    def step(self, action: np.ndarray):
        obs, reward, terminated, truncated, inner = self._env.step(action)
        return self._observe(obs.astype(np.float32)), float(reward), terminated, truncated, self._info(inner)

    def render_frame(self, width: int, height: int, markers: list | None = None) -> np.ndarray:
        return self._renderer.render(self._data, width, height, self._camera, markers)

    def close(self) -> None:
        self._renderer.close()
        self._env.close()


def _register_gym_tasks() -> None:
    for gym_id in GYM_TASKS:
        def factory(obs: str = "state", image_size: int = 64, render_mode: str | None = "rgb_array",
                    _id: str = gym_id, **kwargs: Any) -> GymMujocoEnv:
            return GymMujocoEnv(_id, obs=obs, image_size=image_size, render_mode=render_mode, **kwargs)

        spec = gym.spec(gym_id)
        register(TaskSpec(f"gym/{gym_id}", "gym", factory, ("gym", "reward"),
                          episode_steps=int(spec.max_episode_steps or 1000),
                          description=f"Gymnasium MuJoCo {gym_id}"))


_register_gym_tasks()
