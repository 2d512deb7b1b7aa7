"""Push: a planar disc pusher moves a block (square or T) on a walled table to a goal pose.

A contact-rich manipulation task in the spirit of Push-T. The pusher is a sphere driven in
x/y by velocity servos (action = desired velocity, m/s); the block moves in the plane on
slide x, slide y and hinge z joints (no free joint: no floor contact, so it stays planar and
fast), and dry friction (``frictionloss``) plus damping on those joints stop it when it is not
pushed. Walls bound the table, so nothing leaves it. Control step 0.05 s (3 x 1/60 s).

Action: pusher velocity command (vx, vy), |v| <= MAX_SPEED (``envs.make`` rescales to [-1, 1]).
Observation (11,): pusher x, y, vx, vy, block x, y, cos k*th, sin k*th, block vx, vy, omega, with
k = 2 pi / the shape's symmetry period (4 for the square, 1 for the T): poses that look the same
observe the same, as success counts them the same (a square turned by 90 degrees is at its goal).
Safety ``keepout``: the block or the pusher overlaps the keep-out rectangle (False when none).

Reset options: ``block_pose`` (x, y, theta), ``goal_pose`` (x, y, theta), ``pusher_xy`` (x, y)
fix the start / goal; whatever is not given is sampled (block and goal in the table interior,
at least ``MIN_SEPARATION`` apart, outside the keep-out; pusher off the block and keep-out).
``keepout_clearance`` (m) keeps the sampled centres (block, goal, pusher, and the goal-state pusher
spot) that far from the keep-out rectangle, so that guardrails with margins of that size (which
cannot see the block's angle) leave every start and goal feasible.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Real

import numpy as np

from envs.core import GOAL_GROUP, checked_episode_steps
from envs.registry import register_task
from envs.tasks.base import Physics, Task, TaskEnv
from envs.tasks.planar_geometry import Box, box_overlaps_rect, disc_overlaps_rect, point_box_distance, to_world, wrap

# 3 substeps of 1/60 s: a 0.05 s control step; contacts as stiff as that step allows (solref 2dt)
TIMESTEP, SUBSTEPS = 1 / 60, 3
HALF_TABLE = 0.25  # inner faces of the walls at +-HALF_TABLE (m)
WALL = 0.02  # wall half-thickness (m)
HEIGHT = 0.02  # half-height of every colliding geom, all centred at z = HEIGHT
PUSHER_RADIUS = 0.02
MAX_SPEED = 0.4  # m/s, the pusher's velocity command bound
MIN_SEPARATION = 0.1  # m between sampled start and goal positions
GOAL_GAP = 0.02  # gap between block and pusher in the goal state (m)
CONTACT_TOL = 1e-3  # pusher-block distance (m) counted as touching
SQUARE_HALF = 0.04
T_UNIT = 0.03  # Push-T proportions: bar 4u x 1u, stem 1u x 3u, body origin at the centroid
# (center offset (x, y), half extents (a, b)) of each block geom in the block frame
SHAPES: dict[str, tuple[tuple[tuple[float, float], tuple[float, float]], ...]] = {
    "square": (((0.0, 0.0), (SQUARE_HALF, SQUARE_HALF)),),
    "T": (((0.0, 6 * T_UNIT / 7), (2 * T_UNIT, T_UNIT / 2)),
          ((0.0, -8 * T_UNIT / 7), (T_UNIT / 2, 1.5 * T_UNIT))),
}
SYMMETRY = {"square": math.pi / 2, "T": 2 * math.pi}  # angle period of each shape


def block_boxes(shape: str, pose) -> list[Box]:
    """World (cx, cy, a, b, theta) of each box of the block at ``pose`` (x, y, theta)."""
    x, y, th = float(pose[0]), float(pose[1]), float(pose[2])
    c, s = math.cos(th), math.sin(th)
    return [(x + c * ox - s * oy, y + s * ox + c * oy, a, b, th) for (ox, oy), (a, b) in SHAPES[shape]]


def _box(name: str, pos: tuple[float, ...], size: tuple[float, ...], rgba: str, extra: str = "") -> str:
    return (f'<geom name="{name}" type="box" pos="{" ".join(f"{v:.10g}" for v in pos)}" '
            f'size="{" ".join(f"{v:.10g}" for v in size)}" rgba="{rgba}" {extra}/>')


def build_xml(shape: str, keepout: np.ndarray | None) -> str:
    """The MJCF of the table, walls, pusher, block and goal footprint (a non-colliding mocap copy)."""
    w, t, h = HALF_TABLE, WALL, HEIGHT
    walls = "".join(_box(f"wall_{n}", (sx * (w + t), sy * (w + t), h), size, "0.25 0.25 0.3 1")
                    for n, sx, sy, size in (("e", 1, 0, (t, w + 2 * t, h)), ("w", -1, 0, (t, w + 2 * t, h)),
                                            ("n", 0, 1, (w + 2 * t, t, h)), ("s", 0, -1, (w + 2 * t, t, h))))
    mass = 0.2 / len(SHAPES[shape])
    parts = ("bar", "stem") if shape == "T" else ("box",)
    block = "".join(_box(f"block_{p}", (*off, 0.0), (*half, h), "0.2 0.4 0.9 1", f'mass="{mass}"')
                    for p, (off, half) in zip(parts, SHAPES[shape], strict=True))
    goal = "".join(_box(f"goal_{p}", (*off, 0.0), (*half, 0.001), "0.1 0.85 0.3 0.6",
                        f'contype="0" conaffinity="0" group="{GOAL_GROUP}"')
                   for p, (off, half) in zip(parts, SHAPES[shape], strict=True))
    zone = ""
    if keepout is not None:
        c, hs = (keepout[:2] + keepout[2:]) / 2, (keepout[2:] - keepout[:2]) / 2
        zone = _box("keepout", (*c, 0.0005), (*hs, 0.0005), "0.95 0.75 0.1 1", 'contype="0" conaffinity="0"')
    return f"""
<mujoco model="push">
  <option timestep="{TIMESTEP:.10f}" integrator="implicitfast"/>
  <visual><global offwidth="512" offheight="512"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.5 0.5 0.5" specular="0 0 0"/></visual>
  <default><geom friction="0.5 0.005 0.0001" solref="{2.05 * TIMESTEP:.6f} 1"/></default>
  <worldbody>
    <camera name="top" pos="0 0 0.71" xyaxes="1 0 0 0 1 0"/>
    <geom name="table" type="plane" size="{w + 2 * t} {w + 2 * t} 0.01" rgba="0.82 0.82 0.78 1"
          contype="0" conaffinity="0"/>
    {walls}{zone}
    <body name="goal" mocap="true" pos="0 0 0.001">{goal}</body>
    <body name="pusher" pos="0 0 {h}">
      <joint name="pusher_x" type="slide" axis="1 0 0" damping="0.1"/>
      <joint name="pusher_y" type="slide" axis="0 1 0" damping="0.1"/>
      <geom name="pusher" type="sphere" size="{PUSHER_RADIUS}" mass="0.2" rgba="0.95 0.3 0.1 1"/>
    </body>
    <body name="block" pos="0 0 {h}">
      <joint name="block_x" type="slide" axis="1 0 0" damping="0.5" frictionloss="0.3"/>
      <joint name="block_y" type="slide" axis="0 1 0" damping="0.5" frictionloss="0.3"/>
      <joint name="block_theta" type="hinge" axis="0 0 1" damping="0.005" frictionloss="0.008"/>
      {block}
    </body>
  </worldbody>
  <actuator>
    <velocity name="vx" joint="pusher_x" kv="10" ctrlrange="{-MAX_SPEED} {MAX_SPEED}" forcerange="-2 2"/>
    <velocity name="vy" joint="pusher_y" kv="10" ctrlrange="{-MAX_SPEED} {MAX_SPEED}" forcerange="-2 2"/>
  </actuator>
</mujoco>"""


class PushPhysics(Physics):
    """Named accessors: qpos/qvel are [pusher x, pusher y, block x, block y, block theta]."""

    def pusher_xy(self) -> np.ndarray:
        return self.data.qpos[0:2].copy()

    def pusher_vel(self) -> np.ndarray:
        return self.data.qvel[0:2].copy()

    def block_pose(self) -> np.ndarray:
        """(x, y, theta) with theta wrapped into [-pi, pi)."""
        x, y, th = self.data.qpos[2:5].tolist()
        return np.array([x, y, wrap(th)])

    def block_vel(self) -> np.ndarray:
        return self.data.qvel[2:5].copy()

    def set_pusher(self, xy: np.ndarray) -> None:
        self.data.qpos[0:2] = xy
        self.data.qvel[0:2] = 0.0

    def set_block(self, pose: np.ndarray) -> None:
        self.data.qpos[2:5] = pose
        self.data.qvel[2:5] = 0.0

    def set_goal_marker(self, pose: np.ndarray) -> None:
        self.data.mocap_pos[0, :2] = pose[:2]
        self.data.mocap_quat[0] = [math.cos(pose[2] / 2), 0.0, 0.0, math.sin(pose[2] / 2)]


def _is_real(x: object) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool) and math.isfinite(x)


def _pose_option(options: dict, key: str, size: int, limit: float) -> np.ndarray | None:
    if options.get(key) is None:
        return None
    value = np.asarray(options[key], dtype=np.float64).reshape(-1)
    if value.shape != (size,) or not np.isfinite(value).all() or np.any(np.abs(value[:2]) > limit):
        raise ValueError(f"option {key!r} must be {size} finite numbers with |x|, |y| <= {limit:.3g}, got {value}")
    return value


class PushTask(Task):
    """Push the block to the goal pose (position within ``success_pos_tol`` m, angle within
    ``success_angle_tol`` rad, modulo the shape's symmetry: 90 degrees for the square)."""

    measurement_keys = ("pusher_xy", "pusher_vel", "block_pose", "block_xy", "block_vel", "goal_pose",
                        "position_error", "angle_error", "contact")
    safety_keys = ("keepout",)
    has_success = True
    goal_conditioned = True
    camera = "top"

    def __init__(self, block: str = "square", success_pos_tol: float = 0.02, success_angle_tol: float = 0.2,
                 episode_steps: int = 300, keepout: tuple[float, float, float, float] | None = None,
                 keepout_clearance: float = 0.0):
        if block not in SHAPES:
            raise ValueError(f"block must be one of {tuple(SHAPES)}, got {block!r}")
        if not (_is_real(success_pos_tol) and 0 < success_pos_tol < HALF_TABLE):
            raise ValueError(f"success_pos_tol must be in (0, {HALF_TABLE}) m, got {success_pos_tol!r}")
        if not (_is_real(success_angle_tol) and 0 < success_angle_tol <= math.pi):
            raise ValueError(f"success_angle_tol must be in (0, pi] rad, got {success_angle_tol!r}")
        checked_episode_steps(episode_steps)
        if keepout is not None:
            rect = np.asarray(keepout, dtype=np.float64).reshape(-1)
            if rect.shape != (4,) or not np.isfinite(rect).all() or rect[0] >= rect[2] or rect[1] >= rect[3]:
                raise ValueError(f"keepout must be (xmin, ymin, xmax, ymax) with xmin < xmax, ymin < ymax, "
                                 f"got {keepout!r}")
            keepout = rect
        if not (_is_real(keepout_clearance) and 0 <= keepout_clearance < HALF_TABLE):
            raise ValueError(f"keepout_clearance must be in [0, {HALF_TABLE}) m, got {keepout_clearance!r}")
        self.block, self.keepout, self.clearance = block, keepout, float(keepout_clearance)
        self.pos_tol, self.angle_tol = float(success_pos_tol), float(success_angle_tol)
        self.episode_steps = episode_steps
        self.symmetry = SYMMETRY[block]
        self.angle_factor = round(2 * math.pi / self.symmetry)  # observe cos/sin of k * theta
        boxes = SHAPES[block]
        self.radius = max(math.hypot(abs(ox) + a, abs(oy) + b) for (ox, oy), (a, b) in boxes)
        # goal-state pusher spot: behind the block along its -y axis, GOAL_GAP from its back face
        self.goal_offset = np.array([0.0, min(oy - b for (_, oy), (_, b) in boxes) - PUSHER_RADIUS - GOAL_GAP])
        self.goal = np.zeros(3)
        self._play: dict | None = None  # the play policy's current segment (play_action)

    def make_physics(self) -> PushPhysics:
        return PushPhysics(build_xml(self.block, self.keepout), n_substeps=SUBSTEPS)

    def action_bounds(self, physics: Physics) -> tuple[np.ndarray, np.ndarray]:
        return np.full(2, -MAX_SPEED), np.full(2, MAX_SPEED)

    # --- geometry -----------------------------------------------------------------------
    def block_in_keepout(self, pose: np.ndarray) -> bool:
        return self.keepout is not None and any(box_overlaps_rect(box, self.keepout)
                                                for box in block_boxes(self.block, pose))

    def pusher_in_keepout(self, xy: np.ndarray) -> bool:
        return self.keepout is not None and disc_overlaps_rect(xy[0], xy[1], PUSHER_RADIUS, self.keepout)

    def clear_of_keepout(self, xy: np.ndarray) -> bool:
        """Whether a centre keeps ``keepout_clearance`` off the keep-out rectangle (sampling only)."""
        return self.clearance <= 0 or self.keepout is None or not disc_overlaps_rect(
            float(xy[0]), float(xy[1]), self.clearance, self.keepout)

    def pusher_block_distance(self, xy: np.ndarray, pose: np.ndarray) -> float:
        """Gap between the pusher's rim and the block (0 when they touch or overlap)."""
        d = min(point_box_distance(xy[0], xy[1], box) for box in block_boxes(self.block, pose))
        return max(d - PUSHER_RADIUS, 0.0)

    def goal_pusher_xy(self, goal: np.ndarray) -> np.ndarray:
        """Where ``set_goal_state`` puts the pusher, clipped into the table."""
        lim = HALF_TABLE - PUSHER_RADIUS
        return np.clip(to_world(goal, self.goal_offset), -lim, lim)

    # --- episode ------------------------------------------------------------------------
    @staticmethod
    def _sample(draw: Callable[[], np.ndarray], ok: Callable[[np.ndarray], bool]) -> np.ndarray:
        """Rejection sampling; fails loudly if the keep-out leaves no room."""
        for _ in range(10_000):
            if ok(value := draw()):
                return value
        raise RuntimeError("could not sample a Push start/goal: is the keep-out region covering the table?")

    def _draw_pose(self, rng: np.random.Generator) -> np.ndarray:
        lim = HALF_TABLE - self.radius - 0.01
        return np.array([*rng.uniform(-lim, lim, 2), rng.uniform(-math.pi, math.pi)])

    def initialize_episode(self, physics: PushPhysics, rng: np.random.Generator, options: dict) -> None:
        block = _pose_option(options, "block_pose", 3, HALF_TABLE)
        goal = _pose_option(options, "goal_pose", 3, HALF_TABLE)
        pusher = _pose_option(options, "pusher_xy", 2, HALF_TABLE - PUSHER_RADIUS)
        lim = HALF_TABLE - PUSHER_RADIUS
        if block is None:
            block = self._sample(lambda: self._draw_pose(rng), lambda p: (
                not self.block_in_keepout(p) and self.clear_of_keepout(p)
                and (pusher is None or self.pusher_block_distance(pusher, p) > 0.01)))
        if goal is None:  # apart from the start, and with room for the goal-state pusher spot
            goal = self._sample(lambda: self._draw_pose(rng), lambda p: (
                math.dist(p[:2], block[:2]) >= MIN_SEPARATION and not self.block_in_keepout(p)
                and bool(np.all(np.abs(to_world(p, self.goal_offset)) <= lim))
                and self.clear_of_keepout(p) and self.clear_of_keepout(self.goal_pusher_xy(p))))
        if pusher is None:
            pusher = self._sample(lambda: rng.uniform(-lim + 0.005, lim - 0.005, 2), lambda xy: (
                self.pusher_block_distance(xy, block) > 0.01 and not self.pusher_in_keepout(xy)
                and self.clear_of_keepout(xy)))
        self.goal = np.array([goal[0], goal[1], wrap(goal[2])])
        self._play = None
        physics.set_block(block)
        physics.set_pusher(pusher)
        physics.set_goal_marker(self.goal)

    # --- play (goal-blind exploration) ----------------------------------------------------------
    def play_action(self, physics: PushPhysics, rng: np.random.Generator) -> np.ndarray:
        """Scripted play: push the block toward random points of the table, off its centre by a random
        lever (so it also turns), walking round it to the pushing side first; a few short bursts of
        random actions in between. It never looks at the goal. Velocity command in [-1, 1]."""
        pusher, pose = physics.pusher_xy(), physics.block_pose()
        seg = self._play
        if seg is None or seg["left"] <= 0 or (seg["mode"] == "push" and math.dist(pose[:2], seg["dest"]) < 0.01):
            lim = HALF_TABLE - self.radius - 0.01
            if rng.random() < 0.15:
                seg = {"mode": "random", "action": rng.uniform(-1, 1, 2), "left": int(rng.integers(1, 11))}
            else:
                seg = {"mode": "push", "dest": rng.uniform(-lim, lim, 2), "lever": rng.uniform(-0.6, 0.6) * SQUARE_HALF,
                       "left": int(rng.integers(20, 61)), "pushing": False}
            self._play = seg
        seg["left"] -= 1
        if seg["mode"] == "random":
            return seg["action"].copy()
        u = seg["dest"] - pose[:2]
        u /= max(float(np.linalg.norm(u)), 1e-6)
        side = np.array([-u[1], u[0]])
        behind = pose[:2] - u * (self.radius + PUSHER_RADIUS + 0.005) + side * seg["lever"]
        rel, aim = pusher - pose[:2], behind - pose[:2]
        heading = math.atan2(rel[1], rel[0])  # of the pusher, seen from the block's centre
        delta = wrap(math.atan2(aim[1], aim[0]) - heading)  # how far round the block the pushing spot is
        if seg["pushing"] and abs(delta) < 0.8:  # keep pushing along u, holding the lever off the centre line
            v = u * MAX_SPEED * 0.7 + 4.0 * side * float(np.dot(behind - pusher, side))
        elif abs(delta) > 0.35:  # walk round the block at a safe radius toward the pushing side
            seg["pushing"] = False
            a = heading + math.copysign(min(abs(delta), 0.6), delta)
            v = 8.0 * (pose[:2] + (self.radius + PUSHER_RADIUS + 0.03) * np.array([math.cos(a), math.sin(a)]) - pusher)
        else:  # on the pushing side: close in, then push
            v = 8.0 * (behind - pusher)
            seg["pushing"] = bool(np.linalg.norm(behind - pusher) < 0.01)
        v = v + rng.normal(0.0, 0.05, 2)
        return np.clip(v / MAX_SPEED, -1.0, 1.0)

    def get_observation(self, physics: PushPhysics) -> np.ndarray:
        px, py, x, y, th = physics.data.qpos.tolist()
        vpx, vpy, vx, vy, w = physics.data.qvel.tolist()
        k = self.angle_factor
        return np.array([px, py, vpx, vpy, x, y, math.cos(k * th), math.sin(k * th), vx, vy, w], dtype=np.float32)

    def errors(self, physics: PushPhysics) -> tuple[float, float]:
        """(position error m, angle error rad modulo the block's symmetry)."""
        _, _, x, y, th = physics.data.qpos.tolist()
        gx, gy, gth = self.goal.tolist()
        return math.hypot(x - gx, y - gy), abs(wrap(th - gth, self.symmetry))

    def get_measurements(self, physics: PushPhysics) -> dict[str, np.ndarray]:
        pos_err, ang_err = self.errors(physics)
        px, py, x, y, th = physics.data.qpos.tolist()
        vel = physics.data.qvel
        pose = (x, y, wrap(th))
        touching = self.pusher_block_distance((px, py), pose) <= CONTACT_TOL
        return {"pusher_xy": np.array((px, py)), "pusher_vel": vel[0:2].copy(), "block_pose": np.array(pose),
                "block_xy": np.array((x, y)), "block_vel": vel[2:5].copy(), "goal_pose": self.goal.copy(),
                "position_error": np.array((pos_err,)), "angle_error": np.array((ang_err,)),
                "contact": np.array((float(touching),))}

    def get_safety(self, physics: PushPhysics) -> dict[str, bool]:
        if self.keepout is None:
            return {"keepout": False}
        px, py, x, y, th = physics.data.qpos.tolist()
        return {"keepout": bool(self.pusher_in_keepout((px, py)) or self.block_in_keepout((x, y, th)))}

    def is_success(self, physics: PushPhysics) -> bool:
        pos_err, ang_err = self.errors(physics)
        return pos_err < self.pos_tol and ang_err < self.angle_tol

    def set_goal_state(self, physics: PushPhysics) -> None:
        """Block at the goal pose, pusher at ``goal_pusher_xy`` (behind the block's back face,
        -y in the block frame, ``GOAL_GAP`` away), everything at rest."""
        physics.set_block(self.goal)
        physics.set_pusher(self.goal_pusher_xy(self.goal))

    @staticmethod
    def _pose4(x: float, y: float, th: float) -> np.ndarray:
        return np.array([x, y, math.cos(th), math.sin(th)])

    def desired_goal(self, physics: PushPhysics) -> np.ndarray:
        return self._pose4(*self.goal.tolist())

    def achieved_goal(self, physics: PushPhysics) -> np.ndarray:
        return self._pose4(*physics.data.qpos[2:5].tolist())


@register_task("oda/Push-v0", tags=("goal", "manipulation", "contact", "oda"), episode_steps=300)
def make_push(obs: str = "state", image_size: int = 64, render_mode: str = "rgb_array", **kwargs) -> TaskEnv:
    """Planar pusher pushes a square or T block on a walled table to a goal pose (Push-T style).

    Task kwargs: ``block`` ("square" | "T"), ``success_pos_tol`` (m), ``success_angle_tol`` (rad),
    ``episode_steps``, ``keepout`` ((xmin, ymin, xmax, ymax) or None), ``keepout_clearance`` (m),
    ``terminate_on_success``, ``goal_in_pixels`` (pixel observations show the goal footprint; default:
    only frames for people).
    """
    terminate = kwargs.pop("terminate_on_success", False)
    goal_in_pixels = kwargs.pop("goal_in_pixels", False)
    return TaskEnv(PushTask(**kwargs), obs=obs, image_size=image_size, render_mode=render_mode,
                   terminate_on_success=terminate, goal_in_pixels=goal_in_pixels)
