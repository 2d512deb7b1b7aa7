"""The dm_control suite behind the `OdaEnv` interface: ids ``dmc/<domain>-<task>``.

Every task of ``suite.BENCHMARKING`` is registered. State observations are the suite's
observation dict flattened (in its key order) to float32; pixels are the frames
``physics.render`` would give (camera 0, 2 for quadruped) with shadows, reflections and skybox
off, drawn by our `FrameRenderer` on the same model (1.5x faster: no camera object per frame). Actions are already in
[-1, 1] for these tasks. The default action repeat is 2, as TD-MPC2 and DrQ-v2 use on every
DMC task, so an episode of 1000 simulator steps is 500 agent steps. The suite's time limit
ends an episode as a truncation (discount 1), never as a termination.

``sincos_angles=True`` observes the raw angle of every unlimited hinge (reacher's shoulder, the
torso pitch ``rooty`` of cheetah and hopper) as its sine, with its cosine appended at the end of the
vector. The suite gives those angles unwrapped: an arm that turns past -pi shows -4, -6, ... rad,
values a network trained on [-pi, pi] has barely seen, though they mean the same pose. On
reacher-easy all 12 failures in 50 episodes of one seed's policy came from there (BENCHMARKS.md). The
observation carries the same information either way; which entries are raw angles is found once by
moving each unlimited hinge and seeing which entry moves by exactly as much.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mujoco
import numpy as np

from envs.core import OdaEnv, checked_episode_steps, measurement
from envs.registry import TaskSpec, register
from envs.rendering import FrameRenderer


def _sensor(physics: Any, name: str) -> slice:
    model = physics.model
    i = model.name2id(name, "sensor")
    return slice(model.sensor_adr[i], model.sensor_adr[i] + model.sensor_dim[i])


def _measurements(domain: str, physics: Any) -> Callable[[Any], dict[str, np.ndarray]] | None:
    """Named physical quantities of a domain, the same as the suite's Physics accessors give
    (cart_position, torso_height, speed, ...), with names resolved to indices once: the
    suite's named indexing costs more per step than the physics of a small model."""
    body = lambda name: physics.model.name2id(name, "body")  # noqa: E731
    geom = lambda name: physics.model.name2id(name, "geom")  # noqa: E731
    if domain == "cartpole":
        slider, pole = physics.model.name2id("slider", "joint"), body("pole_1")
        # the pole's cosine and sine (the suite's bounded_position: xmat zz and xz): the cosine alone
        # does not tell on which side of upright the pole leans
        return lambda d: {"cart_position": measurement(d.qpos[slider]), "pole_angle_cos": measurement(d.xmat[pole, 8]),
                          "pole_angle_sin": measurement(d.xmat[pole, 2])}
    if domain == "reacher":
        target, finger = geom("target"), geom("finger")
        def reacher(d: Any) -> dict[str, np.ndarray]:
            offset = d.geom_xpos[target, :2] - d.geom_xpos[finger, :2]
            return {"finger_to_target": measurement(offset),
                    "finger_to_target_dist": measurement(np.linalg.norm(offset))}

        return reacher
    if domain in ("walker", "cheetah", "hopper"):
        vel = _sensor(physics, "torso_subtreelinvel")
        torso = body("torso")
        if domain == "walker":
            return lambda d: {"torso_height": measurement(d.xpos[torso, 2]), "speed": measurement(d.sensordata[vel][0])}
        if domain == "hopper":
            foot = body("foot")
            return lambda d: {"torso_height": measurement(d.xipos[torso, 2] - d.xipos[foot, 2]),
                              "speed": measurement(d.sensordata[vel][0])}
        return lambda d: {"speed": measurement(d.sensordata[vel][0])}
    if domain == "pendulum":
        pole, hinge = body("pole"), physics.model.name2id("hinge", "joint")
        return lambda d: {"pole_vertical": measurement(d.xmat[pole, 8]), "angular_velocity": measurement(d.qvel[hinge])}
    if domain == "point_mass":
        target, mass = geom("target"), geom("pointmass")
        return lambda d: {"mass_to_target_dist": measurement(np.linalg.norm(d.geom_xpos[target] - d.geom_xpos[mass]))}
    return None


class DMCEnv(OdaEnv):
    """One dm_control suite task."""

    def __init__(self, domain: str, task: str, obs: str = "state", image_size: int = 64,
                 render_mode: str | None = "rgb_array", camera_id: int | None = None, sincos_angles: bool = False,
                 episode_steps: int = 1000):
        # the suite's own limit (1000 control steps) still ends an episode; a shorter one truncates it earlier
        episode_steps = checked_episode_steps(episode_steps, high=1000)
        super().__init__(obs=obs, image_size=image_size, render_mode=render_mode)
        import gymnasium as gym
        from dm_control import suite

        self.domain, self.task_name = domain, task
        self._env = suite.load(domain, task)
        self._physics = self._env.physics
        self.camera_id = (2 if domain == "quadruped" else 0) if camera_id is None else camera_id
        self.episode_steps = episode_steps
        self.metadata = {**self.metadata, "render_fps": round(1.0 / self._env.control_timestep())}
        self._data = self._physics.data
        self._renderer = FrameRenderer(self._physics.model.ptr)
        self._measure = _measurements(domain, self._physics)
        self.measurement_keys = tuple(self._info()["measurements"])
        spec = self._env.action_spec()
        action_space = gym.spaces.Box(spec.minimum.astype(np.float32), spec.maximum.astype(np.float32))
        self._state_dim = sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values())
        if not isinstance(sincos_angles, bool):
            raise ValueError(f"sincos_angles must be true or false, got {sincos_angles!r}")
        self._angles = np.zeros(0, dtype=np.int64)
        if sincos_angles:
            self._angles = self._raw_angle_entries()
        self._setup_spaces(self._state_dim + self._angles.size, action_space)

    def _raw_angle_entries(self, delta: float = 0.375) -> np.ndarray:
        """Indices of the flat observation that are the raw angle of an unlimited hinge joint."""
        physics, model = self._physics, self._physics.model
        physics.forward()  # the model's initial pose; no reset, so the task's random state is untouched
        before = self._flatten(self._env.task.get_observation(physics))
        found = []
        for j in range(model.njnt):
            if model.jnt_type[j] != mujoco.mjtJoint.mjJNT_HINGE or model.jnt_limited[j]:
                continue
            adr = model.jnt_qposadr[j]
            physics.data.qpos[adr] += delta
            physics.forward()
            moved = self._flatten(self._env.task.get_observation(physics)) - before
            physics.data.qpos[adr] -= delta
            physics.forward()
            found += [int(i) for i in np.flatnonzero(np.abs(moved - delta) < 1e-4)]
        return np.array(sorted(set(found)), dtype=np.int64)

    def _flatten(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        """The suite's observation dict as one float32 vector, in the suite's key order."""
        out = np.empty(self._state_dim + self._angles.size, dtype=np.float32)
        start = 0
        for value in observation.values():
            value = np.ravel(value)
            out[start:start + value.size] = value
            start += value.size
        if self._angles.size:  # sincos_angles: sin in place, cos after the suite's entries
            angles = out[self._angles]
            out[self._angles] = np.sin(angles)
            out[self._state_dim:] = np.cos(angles)
        return out

    def _info(self) -> dict[str, Any]:
        data = self._data
        measurements = {"qpos": data.qpos.copy(), "qvel": data.qvel.copy()}
        if self._measure:
            measurements.update(self._measure(data))
        return {"measurements": measurements, "safety": {}}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        seed = super().reset(seed=seed)
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

    def render_frame(self, width: int, height: int, markers: list | None = None) -> np.ndarray:
        return self._renderer.render(self._data.ptr, width, height, self.camera_id, markers)

    def close(self) -> None:
        self._renderer.close()
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
