"""ArmReach: a planar 2-link torque-driven arm (top-down, no gravity) reaching goal points.

The project's guardrail test bed. The workspace holds a "person" zone (a disc) inside which the
end effector (ee) must stay under ``speed_limit``, and keep-out hazard discs the ee sphere (radius
``EE_RADIUS``) must never touch. Both are regions, not obstacles: nothing collides.

Safety is checked at every physics substep (``ArmPhysics.step``) and OR-ed over the control
step, so a fast pass through a zone between two observations is never hidden; the last substep
is the observed state, so a violation there is always flagged. ``person_speed``: ee centre
inside the zone (``person_distance <= 0``) and ee speed > ``speed_limit``; ``hazard``: ee sphere
touching a hazard (``hazard_distance <= 0``). At reset the flags are those of the reset state.

obs: [cos q1, sin q1, cos q2, sin q2, qdot1, qdot2] (robot only). Measurements: ee_pos, ee_vel,
ee_speed, joint_pos (unwrapped), joint_angle (cos q1, sin q1, cos q2, sin q2: continuous, what a
camera can see), joint_vel, goal_pos, goal_distance, person_distance,
hazard_distance (``NO_ZONE_DISTANCE`` when there is no zone / hazard). Goals (and sampled starts,
either elbow) are area-uniform in an annulus inside the reach, clear of hazards; the goal state
for ``goal_observation`` is the q2 >= 0 IK solution at rest. Reset options: ``goal_xy`` (2,)
fixes the goal (reachable, clear of hazards), ``start_qpos`` / ``start_qvel`` (2,) the start.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import mujoco
import numpy as np

from envs.core import GOAL_GROUP, checked_episode_steps
from envs.registry import register_task
from envs.tasks.base import Physics, Task, TaskEnv

EE_RADIUS = 0.01  # m; the ee sphere, also the hazard margin
NO_ZONE_DISTANCE = 10.0  # m; person/hazard distance reported when there is no zone / hazard
TIMESTEP, N_SUBSTEPS = 0.005, 4  # 0.02 s control step
MAX_TORQUE, DAMPING, ARMATURE = 0.25, 0.04, 0.001  # terminal joint speed ~ MAX_TORQUE / DAMPING
GOAL_SAMPLING = ("uniform", "crossing")
_OPTION_KEYS = {"goal_xy", "start_qpos", "start_qvel"}


def _vec(name: str, value: Any, n: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64).ravel()
    if arr.shape != (n,) or not np.isfinite(arr).all():
        raise ValueError(f"{name} must be {n} finite numbers, got {value!r}")
    return arr


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _disc(name: str, value: Any, reach: float, inner: float) -> tuple[float, float, float]:
    """A disc (x, y, radius) inside the reach disc and not hidden in the unreachable inner hole."""
    if isinstance(value, Sequence) and len(value) == 2 and isinstance(value[0], Sequence):
        value = (*value[0], value[1])  # ((x, y), radius)
    x, y, r = _vec(name, value, 3)
    _positive(f"{name} radius", r)
    if math.hypot(x, y) + r > reach or math.hypot(x, y) + r <= inner:
        raise ValueError(f"{name} {(x, y, r)} is not inside the reachable workspace "
                         f"(annulus {inner:.3f}..{reach:.3f} m)")
    return float(x), float(y), float(r)


def _seg_dist(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = float(np.clip(np.dot(p - a, ab) / max(float(np.dot(ab, ab)), 1e-12), 0.0, 1.0))
    return float(np.linalg.norm(a + t * ab - p))


class ArmPhysics(Physics):
    """The arm with analytic kinematics and substep safety checks."""

    def __init__(self, xml: str, link_lengths: tuple[float, float], zone: tuple | None,
                 hazards: tuple, speed_limit: float):
        super().__init__(xml, n_substeps=N_SUBSTEPS)
        self.l1, self.l2 = link_lengths
        self.zone, self.hazards, self.speed_limit = zone, hazards, speed_limit
        self.person_violation = self.hazard_violation = False
        self._qpos, self._qvel = self.data.qpos, self.data.qvel  # views, cached: the property is slow

    def ee_state(self) -> tuple[float, float, float, float]:
        """(x, y, vx, vy) of the ee from the current qpos/qvel (exact forward kinematics)."""
        q1, q2 = self._qpos.tolist()
        w1, w2 = self._qvel.tolist()
        c1, s1, c12, s12 = math.cos(q1), math.sin(q1), math.cos(q1 + q2), math.sin(q1 + q2)
        w12 = w1 + w2
        return (self.l1 * c1 + self.l2 * c12, self.l1 * s1 + self.l2 * s12,
                -self.l1 * s1 * w1 - self.l2 * s12 * w12, self.l1 * c1 * w1 + self.l2 * c12 * w12)

    def zone_distances(self, x: float, y: float) -> tuple[float, float]:
        """(ee centre to person-zone boundary, ee surface to nearest hazard boundary); < 0 inside."""
        zone = self.zone
        person = math.hypot(x - zone[0], y - zone[1]) - zone[2] if zone else NO_ZONE_DISTANCE
        hazard = NO_ZONE_DISTANCE
        for hx, hy, hr in self.hazards:
            hazard = min(hazard, math.hypot(x - hx, y - hy) - hr - EE_RADIUS)
        return person, hazard

    def check_safety(self) -> tuple[bool, bool]:
        x, y, vx, vy = self.ee_state()
        person, hazard = self.zone_distances(x, y)
        return person <= 0.0 and math.hypot(vx, vy) > self.speed_limit, hazard <= 0.0

    def reset_safety(self) -> None:
        self.person_violation, self.hazard_violation = self.check_safety()

    def step(self, ctrl: np.ndarray) -> None:
        self.data.ctrl[:] = ctrl
        person = hazard = False
        for _ in range(self.n_substeps):
            mujoco.mj_step(self.model, self.data)
            p, h = self.check_safety()
            person, hazard = person or p, hazard or h
        self.person_violation, self.hazard_violation = person, hazard
        mujoco.mj_kinematics(self.model, self.data)  # so rendered frames show the observed state

    def ik(self, xy: np.ndarray, elbow: int = 1) -> np.ndarray:
        """Joint angles putting the ee at ``xy``; ``elbow=1`` is the solution with q2 >= 0."""
        x, y = xy
        c2 = (x * x + y * y - self.l1 ** 2 - self.l2 ** 2) / (2 * self.l1 * self.l2)
        q2 = math.copysign(math.acos(min(1.0, max(-1.0, c2))), elbow)
        q1 = math.atan2(y, x) - math.atan2(self.l2 * math.sin(q2), self.l1 + self.l2 * math.cos(q2))
        return np.array([math.remainder(q1, 2 * math.pi), q2])


def _build_xml(l1: float, l2: float, zone: tuple | None, hazards: tuple, success_radius: float) -> str:
    reach = l1 + l2
    height = (reach + 0.03) / math.tan(math.radians(22.5))  # fovy 45 covers the reach plus a margin
    nc = 'contype="0" conaffinity="0"'
    regions = "".join(
        f'<geom name="hazard{i}" type="cylinder" size="{r} 0.001" pos="{x} {y} 0.001" rgba="0.9 0.1 0.1 1" {nc}/>'
        for i, (x, y, r) in enumerate(hazards))
    if zone:
        regions += (f'<geom name="person_zone" type="cylinder" size="{zone[2]} 0.0005" '
                    f'pos="{zone[0]} {zone[1]} 0.0005" '
                    f'rgba="1 0.8 0.1 0.6" {nc}/>')
    return f"""<mujoco model="arm_reach">
  <option timestep="{TIMESTEP}" gravity="0 0 0" integrator="implicitfast"/>
  <visual><global offwidth="256" offheight="256"/><quality shadowsize="0"/>
    <headlight ambient="0.6 0.6 0.6" diffuse="0.4 0.4 0.4" specular="0 0 0"/></visual>
  <default><geom {nc}/><joint type="hinge" axis="0 0 1" damping="{DAMPING}" armature="{ARMATURE}"/></default>
  <worldbody>
    <camera name="top" pos="0 0 {height:.4f}" fovy="45"/>
    <geom name="floor" type="plane" size="{reach + 0.05} {reach + 0.05} 0.01" rgba="0.25 0.25 0.3 1"/>
    {regions}
    <geom name="base" type="cylinder" size="0.015 0.01" pos="0 0 0.01" rgba="0.5 0.5 0.5 1"/>
    <body name="link1" pos="0 0 0.02">
      <joint name="shoulder"/>
      <geom type="capsule" fromto="0 0 0 {l1} 0 0" size="0.008" mass="0.1" rgba="0.3 0.6 1 1"/>
      <body name="link2" pos="{l1} 0 0.005">
        <joint name="elbow"/>
        <geom type="capsule" fromto="0 0 0 {l2} 0 0" size="0.007" mass="0.08" rgba="0.3 0.6 1 1"/>
        <geom name="ee" type="sphere" size="{EE_RADIUS}" pos="{l2} 0 0" mass="0.01" rgba="0.9 0.2 0.9 1"/>
        <site name="ee" pos="{l2} 0 0" size="0.001"/>
      </body>
    </body>
    <body name="goal" mocap="true" pos="0 0 0.04">
      <geom type="cylinder" group="{GOAL_GROUP}" size="{success_radius} 0.001" rgba="0.1 0.9 0.2 1"/>
    </body>
  </worldbody>
  <actuator>
    <motor joint="shoulder" gear="{MAX_TORQUE}" ctrlrange="-1 1" ctrllimited="true"/>
    <motor joint="elbow" gear="{MAX_TORQUE}" ctrlrange="-1 1" ctrllimited="true"/>
  </actuator>
</mujoco>"""


class ArmReachTask(Task):
    """Reach a goal point with the ee; see the module docstring for the safety signals."""

    measurement_keys = ("ee_pos", "ee_vel", "ee_speed", "joint_pos", "joint_angle", "joint_vel", "goal_pos",
                        "goal_distance", "person_distance", "hazard_distance")
    safety_keys = ("person_speed", "hazard")
    has_success = True
    goal_conditioned = True
    camera = "top"

    def __init__(self, link_lengths: Sequence[float] = (0.12, 0.12),
                 person_zone: Any = (0.09, 0.08, 0.05), speed_limit: float = 0.2,
                 hazards: Sequence[Any] = ((-0.02, -0.13, 0.03),), success_radius: float = 0.015,
                 episode_steps: int = 200, goal_sampling: str = "uniform"):
        l1, l2 = _vec("link_lengths", link_lengths, 2)
        if l1 <= 0 or l2 <= 0:
            raise ValueError(f"link_lengths must be > 0, got {link_lengths!r}")
        self.link_lengths = (float(l1), float(l2))
        self.reach, self.inner = float(l1 + l2), float(abs(l1 - l2))
        # Goals and starts come from this annulus, away from the singular inner/outer rims.
        self.annulus = (self.inner + 0.15 * self.reach, 0.92 * self.reach)
        self.person_zone = None if person_zone is None else _disc("person_zone", person_zone, self.reach, self.inner)
        self.speed_limit = _positive("speed_limit", speed_limit)
        hazards = list(hazards) if isinstance(hazards, np.ndarray) else hazards
        if isinstance(hazards, (str, bytes)) or not isinstance(hazards, Sequence):
            raise ValueError(f"hazards must be a sequence of (x, y, radius), got {hazards!r}")
        self.hazards = tuple(_disc(f"hazards[{i}]", h, self.reach, self.inner) for i, h in enumerate(hazards))
        self.success_radius = _positive("success_radius", success_radius)
        if self.success_radius >= 0.25 * self.reach:
            raise ValueError(f"success_radius must be < a quarter of the reach, got {success_radius!r}")
        self.episode_steps = checked_episode_steps(episode_steps)
        if goal_sampling not in GOAL_SAMPLING:
            raise ValueError(f"goal_sampling must be one of {GOAL_SAMPLING}, got {goal_sampling!r}")
        self.goal_sampling = goal_sampling
        self._goal = np.zeros(2)
        r = np.linspace(*self.annulus, 12)[:, None]
        a = np.linspace(-math.pi, math.pi, 48, endpoint=False)[None]
        grid = np.stack([r * np.cos(a), r * np.sin(a)], -1).reshape(-1, 2)
        if not any(self._clear(p) for p in grid):
            raise ValueError("hazards cover the whole goal region")

    def make_physics(self) -> ArmPhysics:
        xml = _build_xml(*self.link_lengths, self.person_zone, self.hazards, self.success_radius)
        return ArmPhysics(xml, self.link_lengths, self.person_zone, self.hazards, self.speed_limit)

    def action_bounds(self, physics: Physics) -> tuple[np.ndarray, np.ndarray]:
        return -np.ones(2), np.ones(2)

    def _clear(self, p: np.ndarray) -> bool:
        """The ee sphere at ``p`` does not touch any hazard."""
        return all(math.hypot(p[0] - x, p[1] - y) > r + EE_RADIUS for x, y, r in self.hazards)

    def _sample_point(self, rng: np.random.Generator) -> np.ndarray:
        """A hazard-free point, area-uniform in the goal annulus."""
        lo, hi = self.annulus
        for _ in range(100_000):
            r, a = math.sqrt(rng.uniform(lo * lo, hi * hi)), rng.uniform(-math.pi, math.pi)
            p = np.array([r * math.cos(a), r * math.sin(a)])
            if self._clear(p):
                return p
        raise RuntimeError("hazards leave almost no room for goals")

    def _crosses(self, a: np.ndarray, b: np.ndarray) -> bool:
        """The straight segment a->b passes through the person zone or a hazard."""
        discs = [(*self.person_zone[:2], self.person_zone[2])] if self.person_zone else []
        discs += [(x, y, r + EE_RADIUS) for x, y, r in self.hazards]
        return any(_seg_dist(np.array([x, y]), a, b) < r for x, y, r in discs)

    def initialize_episode(self, physics: ArmPhysics, rng: np.random.Generator, options: dict) -> None:
        unknown = set(options) - _OPTION_KEYS
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; expected some of {sorted(_OPTION_KEYS)}")
        goal = None
        if "goal_xy" in options:
            goal = _vec("goal_xy", options["goal_xy"], 2)
            if not self.inner <= float(np.hypot(*goal)) <= self.reach:
                raise ValueError(f"goal_xy {goal} is unreachable (ee radius must lie in "
                                 f"[{self.inner:.3f}, {self.reach:.3f}] m)")
            if not self._clear(goal):
                raise ValueError(f"goal_xy {goal} touches a hazard")
        start_q = _vec("start_qpos", options["start_qpos"], 2) if "start_qpos" in options else None
        qvel = _vec("start_qvel", options.get("start_qvel", (0.0, 0.0)), 2)
        for _ in range(1000):
            q = start_q if start_q is not None else physics.ik(self._sample_point(rng), elbow=rng.choice([-1, 1]))
            physics.data.qpos[:] = q
            start_ee = np.array(physics.ee_state()[:2])
            g = goal if goal is not None else self._sample_point(rng)
            if start_q is not None and goal is not None:
                break
            if np.linalg.norm(g - start_ee) <= 2 * self.success_radius:
                continue
            if self.goal_sampling == "uniform" or not (self.person_zone or self.hazards) or self._crosses(start_ee, g):
                break
        else:
            raise RuntimeError("could not sample a start and goal satisfying the goal_sampling constraints")
        physics.data.qvel[:] = qvel
        self._goal = np.array(g, dtype=np.float64)
        physics.data.mocap_pos[0, :2] = self._goal
        physics.reset_safety()

    def safe_action(self, state: np.ndarray) -> np.ndarray:
        """Brake the joints: torques against the joint velocities (obs[4:6]); the gain stops the arm
        in ~10 steps without chattering at the 0.02 s control step."""
        return -0.3 * state[4:6]

    def get_observation(self, physics: Physics) -> np.ndarray:
        q1, q2 = physics.data.qpos.tolist()
        w1, w2 = physics.data.qvel.tolist()
        return np.array([math.cos(q1), math.sin(q1), math.cos(q2), math.sin(q2), w1, w2], dtype=np.float32)

    def get_measurements(self, physics: ArmPhysics) -> dict[str, np.ndarray]:
        x, y, vx, vy = physics.ee_state()
        person, hazard = physics.zone_distances(x, y)
        gx, gy = self._goal
        q = physics.data.qpos
        return {
            "ee_pos": np.array([x, y]), "ee_vel": np.array([vx, vy]), "ee_speed": np.array([math.hypot(vx, vy)]),
            "joint_pos": q.copy(), "joint_angle": np.concatenate([np.cos(q), np.sin(q)])[[0, 2, 1, 3]],
            "joint_vel": physics.data.qvel.copy(),
            "goal_pos": self._goal.copy(), "goal_distance": np.array([math.hypot(x - gx, y - gy)]),
            "person_distance": np.array([person]), "hazard_distance": np.array([hazard]),
        }

    def get_safety(self, physics: ArmPhysics) -> dict[str, bool]:
        return {"person_speed": physics.person_violation, "hazard": physics.hazard_violation}

    def is_success(self, physics: ArmPhysics) -> bool:
        x, y = physics.ee_state()[:2]
        return math.hypot(x - self._goal[0], y - self._goal[1]) <= self.success_radius

    def set_goal_state(self, physics: ArmPhysics) -> None:
        physics.data.qpos[:] = physics.ik(self._goal)
        physics.data.qvel[:] = 0.0

    def desired_goal(self, physics: Physics) -> np.ndarray:
        return self._goal.copy()

    def achieved_goal(self, physics: ArmPhysics) -> np.ndarray:
        return np.array(physics.ee_state()[:2])


@register_task("oda/ArmReach-v0", tags=("goal", "manipulation", "safety", "oda"), episode_steps=200)
def make_arm_reach(obs: str = "state", image_size: int = 64, render_mode: str | None = "rgb_array",
                   terminate_on_success: bool = False, goal_in_pixels: bool = False, **kwargs: Any) -> TaskEnv:
    """Planar 2-link arm reaching goals; safety: speed limit in a person zone, keep-out hazards.

    kwargs: ``link_lengths``, ``person_zone`` ((x, y, r) or None), ``speed_limit`` (m/s),
    ``hazards`` (sequence of (x, y, r)), ``success_radius``, ``episode_steps``,
    ``goal_sampling`` ("uniform", or "crossing": the straight start->goal ee segment passes
    through the person zone or a hazard). ``goal_in_pixels``: pixel observations show the goal disc
    (default: only frames for people do; the agent gets its goal as an image).
    """
    if not isinstance(terminate_on_success, bool):
        raise ValueError(f"terminate_on_success must be a bool, got {terminate_on_success!r}")
    return TaskEnv(ArmReachTask(**kwargs), obs=obs, image_size=image_size, render_mode=render_mode,
                   terminate_on_success=terminate_on_success, goal_in_pixels=goal_in_pixels)
