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

from envs.core import OdaEnv, checked_episode_steps, measurement
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
                 render_mode: str | None = "rgb_array", episode_steps: int | None = None, **gym_kwargs: Any):
        super().__init__(obs=obs, image_size=image_size, render_mode=render_mode)
        if episode_steps is not None:
            checked_episode_steps(episode_steps)
        self.gym_id = gym_id
        self._env = gym.make(gym_id, disable_env_checker=True, **gym_kwargs).unwrapped
        self._data = self._env.data
        # the time limit `envs.make` applies: Gymnasium's registered max_episode_steps unless given
        self.episode_steps = episode_steps or int(gym.spec(gym_id).max_episode_steps or 1000)
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


class GymReacherEnv(GymMujocoEnv):
    """Reacher-v5, also a goal-reaching task: success when the fingertip is within
    ``success_radius`` (default 0.02 m: fingertip and target touch) of the target.

    Gymnasium's reward is kept. ``goal_observation()`` is the observation with the arm at rest in
    the inverse-kinematics pose that puts the fingertip on the target (of the two elbow solutions,
    the one nearer the current joint angles), so a reward-free agent can plan toward it.
    """

    has_success = True
    goal_conditioned = True
    LINKS = (0.1, 0.11)  # shoulder -> elbow, elbow -> fingertip (Gymnasium's reacher.xml)

    def __init__(self, gym_id: str = "Reacher-v5", obs: str = "state", image_size: int = 64,
                 render_mode: str | None = "rgb_array", success_radius: float = 0.02, **gym_kwargs: Any):
        if not (isinstance(success_radius, (int, float)) and 0 < success_radius < 0.2):
            raise ValueError(f"success_radius must be in (0, 0.2) m, got {success_radius!r}")
        self.success_radius = float(success_radius)
        super().__init__(gym_id, obs=obs, image_size=image_size, render_mode=render_mode, **gym_kwargs)

    def _info(self, inner: dict[str, Any]) -> dict[str, Any]:
        info = super()._info(inner)
        tip, target = self._data.body("fingertip").xpos[:2].copy(), self._data.body("target").xpos[:2].copy()
        info.update(success=bool(np.linalg.norm(tip - target) < self.success_radius),
                    desired_goal=target, achieved_goal=tip)
        return info

    def goal_joint_angles(self) -> np.ndarray:
        """Shoulder and elbow angles that put the fingertip on the target (2-link inverse kinematics)."""
        l1, l2 = self.LINKS
        x, y = self._data.qpos[2:4]
        cos_elbow = np.clip((x * x + y * y - l1 * l1 - l2 * l2) / (2 * l1 * l2), -1.0, 1.0)
        elbow_limit = float(self._env.model.jnt_range[1, 1])
        current = self._data.qpos[:2]
        best, best_gap = None, np.inf
        for elbow in (np.arccos(cos_elbow), -np.arccos(cos_elbow)):
            elbow = float(np.clip(elbow, -elbow_limit, elbow_limit))
            shoulder = np.arctan2(y, x) - np.arctan2(l2 * np.sin(elbow), l1 + l2 * np.cos(elbow))
            angles = np.array([shoulder, elbow])
            gap = np.abs(np.angle(np.exp(1j * (angles - current)))).sum()  # wrapped angular distance
            if gap < best_gap:
                best, best_gap = angles, gap
        return best

    def goal_observation(self) -> Any:
        d, model = self._data, self._env.model
        qpos, qvel = d.qpos.copy(), d.qvel.copy()
        try:
            d.qpos[:2] = self.goal_joint_angles()
            d.qvel[:] = 0.0
            mujoco.mj_forward(model, d)
            return self._observe(self._env._get_obs().astype(np.float32))
        finally:
            d.qpos[:], d.qvel[:] = qpos, qvel
            mujoco.mj_forward(model, d)


_ENV_CLASSES: dict[str, type[GymMujocoEnv]] = {"Reacher-v5": GymReacherEnv}


def _register_gym_tasks() -> None:
    for gym_id in GYM_TASKS:
        env_cls = _ENV_CLASSES.get(gym_id, GymMujocoEnv)

        def factory(obs: str = "state", image_size: int = 64, render_mode: str | None = "rgb_array",
                    _id: str = gym_id, _cls: type[GymMujocoEnv] = env_cls, **kwargs: Any) -> GymMujocoEnv:
            return _cls(_id, obs=obs, image_size=image_size, render_mode=render_mode, **kwargs)

        spec = gym.spec(gym_id)
        tags = ("gym", "reward", "goal") if env_cls.goal_conditioned else ("gym", "reward")
        register(TaskSpec(f"gym/{gym_id}", "gym", factory, tags,
                          episode_steps=int(spec.max_episode_steps or 1000),
                          description=f"Gymnasium MuJoCo {gym_id}"))


_register_gym_tasks()
