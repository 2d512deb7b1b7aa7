"""The dm_control suite behind the `OdaEnv` interface: ids ``dmc/<domain>-<task>``.

Every task of ``suite.BENCHMARKING`` is registered. State observations are the suite's
observation dict flattened (in its key order) to float32; pixels come from ``physics.render``
(camera 0, 2 for quadruped) with shadows, reflections and skybox off. Actions are already in
[-1, 1] for these tasks. The default action repeat is 2, as TD-MPC2 and DrQ-v2 use on every
DMC task, so an episode of 1000 simulator steps is 500 agent steps. The suite's time limit
ends an episode as a truncation (discount 1), never as a termination.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from envs.core import FAST_RENDER_FLAGS, OdaEnv
from envs.registry import TaskSpec, register


def _arr(*values: float | np.ndarray) -> np.ndarray:
    """A flat float64 array: measurements are 1-d even for scalars."""
    return np.concatenate([np.ravel(v) for v in values]).astype(np.float64)


# Named physical quantities per domain, read through the suite's own Physics accessors.
_DOMAIN_MEASUREMENTS: dict[str, Callable[[Any], dict[str, np.ndarray]]] = {
    "cartpole": lambda p: {"cart_position": _arr(p.cart_position()), "pole_angle_cos": _arr(p.pole_angle_cosine())},
    "reacher": lambda p: {"finger_to_target": _arr(p.finger_to_target()),
                          "finger_to_target_dist": _arr(p.finger_to_target_dist())},
    "walker": lambda p: {"torso_height": _arr(p.torso_height()), "speed": _arr(p.horizontal_velocity())},
    "cheetah": lambda p: {"speed": _arr(p.speed())},
    "hopper": lambda p: {"torso_height": _arr(p.height()), "speed": _arr(p.speed())},
    "pendulum": lambda p: {"pole_vertical": _arr(p.pole_vertical()), "angular_velocity": _arr(p.angular_velocity())},
    "point_mass": lambda p: {"mass_to_target_dist": _arr(p.mass_to_target_dist())},
    "humanoid": lambda p: {"head_height": _arr(p.head_height()), "com_velocity": _arr(p.center_of_mass_velocity())},
}


class DMCEnv(OdaEnv):
    """One dm_control suite task."""

    def __init__(self, domain: str, task: str, obs: str = "state", image_size: int = 64,
                 render_mode: str | None = "rgb_array", camera_id: int | None = None):
        super().__init__(obs=obs, image_size=image_size, render_mode=render_mode)
        import gymnasium as gym
        from dm_control import suite

        self.domain, self.task_name = domain, task
        self._env = suite.load(domain, task)
        self._physics = self._env.physics
        self.camera_id = (2 if domain == "quadruped" else 0) if camera_id is None else camera_id
        self.episode_steps = 1000
        self.metadata = {**self.metadata, "render_fps": round(1.0 / self._env.control_timestep())}
        self._measure = _DOMAIN_MEASUREMENTS.get(domain)
        self.measurement_keys = tuple(self._info()["measurements"])
        spec = self._env.action_spec()
        action_space = gym.spaces.Box(spec.minimum.astype(np.float32), spec.maximum.astype(np.float32))
        state_dim = sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values())
        self._setup_spaces(state_dim, action_space)

    @staticmethod
    def _flatten(observation: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([np.asarray(v, dtype=np.float32).ravel() for v in observation.values()])

    def _info(self) -> dict[str, Any]:
        data = self._physics.data
        measurements = {"qpos": data.qpos.copy(), "qvel": data.qvel.copy()}
        if self._measure:
            measurements.update(self._measure(self._physics))
        return {"measurements": measurements, "safety": {}}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            # The suite samples initial states with the task's RandomState; reseed it.
            self._env.task._random = np.random.RandomState(seed)  # noqa: SLF001
        time_step = self._env.reset()
        return self._observe(self._flatten(time_step.observation)), self._info()

    def step(self, action: np.ndarray):
        time_step = self._env.step(action)
        terminated = bool(time_step.last() and time_step.discount == 0.0)
        truncated = bool(time_step.last() and not terminated)
        obs = self._observe(self._flatten(time_step.observation))
        return obs, float(time_step.reward or 0.0), terminated, truncated, self._info()

    def render_frame(self, width: int, height: int) -> np.ndarray:
        return self._physics.render(height, width, camera_id=self.camera_id, render_flag_overrides=FAST_RENDER_FLAGS)

    def close(self) -> None:
        self._env.close()


def _register_suite() -> None:
    from dm_control import suite

    for domain, task in suite.BENCHMARKING:
        def factory(obs: str = "state", image_size: int = 64, render_mode: str | None = "rgb_array",
                    _d: str = domain, _t: str = task, **kwargs: Any) -> DMCEnv:
            return DMCEnv(_d, _t, obs=obs, image_size=image_size, render_mode=render_mode, **kwargs)

        register(TaskSpec(f"dmc/{domain}-{task}", "dmc", factory, ("dmc", "reward"), episode_steps=1000,
                          action_repeat=2, description=f"dm_control suite {domain} {task}"))


_register_suite()
