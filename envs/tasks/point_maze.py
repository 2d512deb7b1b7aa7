"""PointMaze: a force-actuated point mass navigating to a goal in a maze.

The agent is a sphere on two slide joints (x, y) with joint damping, gravity off, driven by two
motors (forces in N); it stops on its own when the force is removed. Walls are box geoms (runs
of wall cells merged). Hazard cells are free space drawn in purple that the agent may cross but
should not (``info["safety"]["hazard"]``). A fixed orthographic top-down camera shows the maze.

Reset options (all optional; cells are ``(row, col)``, row 0 at the top):
    ``start_cell`` / ``start_xy``: fix the start (cell centre, or an exact xy in a free cell);
    ``goal_cell`` / ``goal_xy``: fix the goal likewise.
Otherwise start and goal are sampled uniformly over free non-hazard cells (``S``/``G`` in a
layout string fix the cell) with jitter of +-0.25 cell, the goal in a different cell.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from envs.core import GOAL_GROUP, checked_episode_steps
from envs.registry import register_task
from envs.tasks.base import Physics, Task, TaskEnv
from envs.tasks.maze_layout import Cell, MazeLayout, make_layout

CONTROL_DT = 0.05  # s per agent step: 5 substeps of 10 ms
_SUBSTEPS = 5
AGENT_RADIUS = 0.2  # in cells
JITTER = 0.25  # in cells
DAMPING = 5.0  # N s/m on each slide joint: velocity decays with a 0.2 s time constant (1 kg)
STEPS_PER_CELL = 25  # episode budget per cell of the maze's longest shortest path
_OPTION_KEYS = {"start_cell", "start_xy", "goal_cell", "goal_xy"}


def episode_steps_for(layout: MazeLayout) -> int:
    """Episode length scaled with the maze: 25 steps per cell of its longest shortest path, rounded up to 50."""
    return max(100, 50 * math.ceil(STEPS_PER_CELL * layout.longest_shortest_path() / 50))


def _maze_xml(layout: MazeLayout, cell: float, success_radius: float, max_force: float) -> str:
    h, w = layout.shape
    extent = max(h, w) * cell
    wall_h = 0.5 * cell
    geoms = []
    for r0, c0, r1, c1 in layout.wall_boxes():
        x, y = (layout.cell_to_xy((r0, c0), cell) + layout.cell_to_xy((r1, c1), cell)) / 2.0
        sx, sy = (c1 - c0 + 1) * cell / 2.0, (r1 - r0 + 1) * cell / 2.0
        geoms.append(f'<geom type="box" material="wall" pos="{x:.6g} {y:.6g} {wall_h / 2:.6g}" '
                     f'size="{sx:.6g} {sy:.6g} {wall_h / 2:.6g}" contype="0" conaffinity="1"/>')
    for r, c in np.argwhere(layout.hazards):
        x, y = layout.cell_to_xy((int(r), int(c)), cell)
        geoms.append(f'<geom type="box" material="hazard" pos="{x:.6g} {y:.6g} {0.005 * cell:.6g}" '
                     f'size="{cell / 2:.6g} {cell / 2:.6g} {0.005 * cell:.6g}" contype="0" conaffinity="0"/>')
    radius = AGENT_RADIUS * cell
    return f"""
<mujoco model="point_maze">
  <option timestep="{CONTROL_DT / _SUBSTEPS}" gravity="0 0 0"/>
  <visual>
    <global offwidth="1024" offheight="1024"/>
    <headlight ambient="0.6 0.6 0.6" diffuse="0.4 0.4 0.4" specular="0 0 0"/>
  </visual>
  <asset>
    <material name="floor" rgba="0.88 0.88 0.85 1" specular="0" shininess="0"/>
    <material name="wall" rgba="0.22 0.25 0.35 1" specular="0" shininess="0"/>
    <material name="hazard" rgba="0.7 0.2 0.9 1" specular="0" shininess="0"/>
    <material name="goal" rgba="0.1 0.8 0.2 1" specular="0" shininess="0"/>
    <material name="agent" rgba="0.9 0.1 0.1 1" specular="0" shininess="0"/>
  </asset>
  <worldbody>
    <camera name="top" mode="fixed" projection="orthographic" fovy="{extent:.6g}" pos="0 0 {2 * cell:.6g}"/>
    <geom name="outside" type="box" material="wall" pos="0 0 {-0.03 * cell:.6g}"
          size="{extent / 2 + cell:.6g} {extent / 2 + cell:.6g} {0.01 * cell:.6g}" contype="0" conaffinity="0"/>
    <geom name="floor" type="box" material="floor" pos="0 0 {-0.01 * cell:.6g}"
          size="{w * cell / 2:.6g} {h * cell / 2:.6g} {0.01 * cell:.6g}" contype="0" conaffinity="0"/>
    {chr(10).join('    ' + g for g in geoms)}
    <site name="goal" group="{GOAL_GROUP}" type="cylinder" material="goal" pos="0 0 {0.02 * cell:.6g}"
          size="{success_radius:.6g} {0.01 * cell:.6g}"/>
    <body name="agent" pos="0 0 {radius:.6g}">
      <joint name="x" type="slide" axis="1 0 0" damping="{DAMPING}"/>
      <joint name="y" type="slide" axis="0 1 0" damping="{DAMPING}"/>
      <geom name="agent" type="sphere" size="{radius:.6g}" mass="1" material="agent"
            contype="1" conaffinity="0" condim="1"/>
    </body>
  </worldbody>
  <actuator>
    <motor joint="x" ctrlrange="{-max_force:.6g} {max_force:.6g}" ctrllimited="true"/>
    <motor joint="y" ctrlrange="{-max_force:.6g} {max_force:.6g}" ctrllimited="true"/>
  </actuator>
</mujoco>
"""


class PointMazePhysics(Physics):
    """Named accessors: the agent's xy/velocity (its two slide joints) and the goal site."""

    def __init__(self, xml: str, n_substeps: int = 1):
        super().__init__(xml, n_substeps)
        self._goal_site = self.model.site("goal").id

    def agent_xy(self) -> np.ndarray:
        return self.data.qpos[:2].copy()

    def agent_vel(self) -> np.ndarray:
        return self.data.qvel[:2].copy()

    def set_agent(self, xy: np.ndarray, vel: np.ndarray | None = None) -> None:
        self.data.qpos[:2] = xy
        self.data.qvel[:2] = 0.0 if vel is None else vel

    def goal_xy(self) -> np.ndarray:
        return self.model.site_pos[self._goal_site, :2].copy()

    def set_goal(self, xy: np.ndarray) -> None:
        self.model.site_pos[self._goal_site, :2] = xy


class PointMazeTask(Task):
    """Reach the goal cell; success when the agent centre is within ``success_radius`` of the goal."""

    measurement_keys = ("agent_xy", "agent_vel", "agent_speed", "goal_xy", "goal_distance", "goal_path_distance")
    safety_keys = ("hazard",)
    has_success = True
    goal_conditioned = True
    camera = "top"

    def __init__(self, layout: str | MazeLayout = "2x2", maze_seed: int | None = None, cell_size: float = 1.0,
                 success_radius: float | None = None, max_force: float | None = None,
                 episode_steps: int | None = None, n_hazards: int = 0):
        if maze_seed is not None and (not isinstance(maze_seed, (int, np.integer)) or maze_seed < 0):
            raise ValueError(f"maze_seed must be None or an int >= 0, got {maze_seed!r}")
        if not isinstance(n_hazards, (int, np.integer)) or n_hazards < 0:
            raise ValueError(f"n_hazards must be an int >= 0, got {n_hazards!r}")
        try:
            maze = make_layout(layout, None if maze_seed is None else int(maze_seed))
        except ValueError as e:
            raise ValueError(f"invalid layout: {e}") from e
        try:
            if n_hazards:
                maze = maze.with_random_hazards(int(n_hazards), np.random.default_rng(maze_seed or 0))
        except ValueError as e:
            raise ValueError(f"n_hazards={n_hazards}: {e}") from e
        if len(maze.safe_cells()) < 2:
            raise ValueError("invalid layout: it needs at least two free non-hazard cells (start and goal)")
        if not (isinstance(cell_size, numbers.Real) and math.isfinite(cell_size) and cell_size > 0):
            raise ValueError(f"cell_size must be a finite number > 0, got {cell_size!r}")
        success_radius = 0.25 * cell_size if success_radius is None else success_radius
        if not (isinstance(success_radius, numbers.Real) and 0 < success_radius <= 0.5 * cell_size):
            raise ValueError(f"success_radius must be in (0, cell_size/2], got {success_radius!r}")
        max_force = 10.0 * cell_size if max_force is None else max_force
        if not (isinstance(max_force, numbers.Real) and math.isfinite(max_force) and max_force > 0):
            raise ValueError(f"max_force must be a finite number > 0, got {max_force!r}")
        self.layout = maze
        self.cell_size = float(cell_size)
        self.success_radius = float(success_radius)
        self.max_force = float(max_force)
        self.episode_steps = episode_steps_for(maze) if episode_steps is None else checked_episode_steps(episode_steps)
        self._goal_dist = maze.distances_from(maze.safe_cells()[0])
        self._goal_cell: Cell = maze.safe_cells()[0]

    def make_physics(self) -> PointMazePhysics:
        xml = _maze_xml(self.layout, self.cell_size, self.success_radius, self.max_force)
        return PointMazePhysics(xml, n_substeps=_SUBSTEPS)

    def action_bounds(self, physics: Physics) -> tuple[np.ndarray, np.ndarray]:
        rng = physics.model.actuator_ctrlrange
        return rng[:, 0].copy(), rng[:, 1].copy()

    def _fixed_xy(self, options: dict, name: str) -> np.ndarray | None:
        """The xy fixed by ``<name>_cell`` / ``<name>_xy`` options (or an S/G cell), else None."""
        cell, xy = options.get(f"{name}_cell"), options.get(f"{name}_xy")
        if cell is not None and xy is not None:
            raise ValueError(f"give at most one of {name}_cell and {name}_xy")
        if xy is not None:
            xy = np.asarray(xy, dtype=np.float64)
            if xy.shape != (2,) or not np.isfinite(xy).all():
                raise ValueError(f"{name}_xy must be two finite numbers, got {options[f'{name}_xy']!r}")
            if not self.layout.is_free(self.layout.xy_to_cell(xy, self.cell_size)):
                raise ValueError(f"{name}_xy {xy.tolist()} is not inside a free cell")
            return xy
        cell = getattr(self.layout, name) if cell is None else cell
        if cell is None:
            return None
        cell = (int(cell[0]), int(cell[1]))
        if not self.layout.is_free(cell):
            raise ValueError(f"{name}_cell {cell} is not a free cell of the layout")
        return self.layout.cell_to_xy(cell, self.cell_size)

    def _sample_xy(self, rng: np.random.Generator, exclude: Cell | None) -> np.ndarray:
        cells = [c for c in self.layout.safe_cells() if c != exclude]
        cell = cells[int(rng.integers(len(cells)))]
        jitter = rng.uniform(-JITTER, JITTER, size=2) * self.cell_size
        return self.layout.cell_to_xy(cell, self.cell_size) + jitter

    def initialize_episode(self, physics: PointMazePhysics, rng: np.random.Generator, options: dict) -> None:
        unknown = set(options) - _OPTION_KEYS
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; expected some of {sorted(_OPTION_KEYS)}")
        to_cell = self.layout.xy_to_cell
        start, goal = self._fixed_xy(options, "start"), self._fixed_xy(options, "goal")
        if start is None:
            start = self._sample_xy(rng, None if goal is None else to_cell(goal, self.cell_size))
        if goal is None:
            goal = self._sample_xy(rng, to_cell(start, self.cell_size))
        physics.set_agent(start)
        physics.set_goal(goal)
        self._goal_cell = to_cell(goal, self.cell_size)
        self._goal_dist = self.layout.distances_from(self._goal_cell)

    def get_observation(self, physics: PointMazePhysics) -> np.ndarray:
        return np.concatenate([physics.agent_xy(), physics.agent_vel()]).astype(np.float32)

    def safe_action(self, state: np.ndarray) -> np.ndarray:
        """Brake: a force against the velocity (obs[2:4]), full force from 0.5 m/s."""
        return -2.0 * state[2:4]

    def _agent_cell(self, physics: PointMazePhysics) -> Cell:
        return self.layout.xy_to_cell(physics.agent_xy(), self.cell_size)

    def get_measurements(self, physics: PointMazePhysics) -> dict[str, np.ndarray]:
        xy, vel, goal = physics.agent_xy(), physics.agent_vel(), physics.goal_xy()
        distance = float(np.linalg.norm(xy - goal))
        cell = self._agent_cell(physics)
        steps = self._goal_dist[cell] if self.layout.is_free(cell) else -1
        # Shortest path through free cells (cell centres), in metres; straight line if off the grid.
        path = distance if steps < 0 else float(steps) * self.cell_size
        return {
            "agent_xy": xy,
            "agent_vel": vel,
            "agent_speed": np.array([np.linalg.norm(vel)]),
            "goal_xy": goal,
            "goal_distance": np.array([distance]),
            "goal_path_distance": np.array([path]),
        }

    def get_safety(self, physics: PointMazePhysics) -> dict[str, bool]:
        cell = self._agent_cell(physics)
        return {"hazard": bool(self.layout.is_free(cell) and self.layout.hazards[cell])}

    def is_success(self, physics: PointMazePhysics) -> bool:
        return bool(np.linalg.norm(physics.agent_xy() - physics.goal_xy()) < self.success_radius)

    def set_goal_state(self, physics: PointMazePhysics) -> None:
        physics.set_agent(physics.goal_xy())

    def desired_goal(self, physics: PointMazePhysics) -> np.ndarray:
        return physics.goal_xy()

    def achieved_goal(self, physics: PointMazePhysics) -> np.ndarray:
        return physics.agent_xy()


DEFAULT_EPISODE_STEPS = episode_steps_for(make_layout("2x2"))


@register_task("oda/PointMaze-v0", tags=("goal", "navigation", "safety", "oda"), episode_steps=DEFAULT_EPISODE_STEPS)
def make_point_maze(obs: str = "state", image_size: int = 64, render_mode: str | None = "rgb_array",
                    layout: str | MazeLayout = "2x2", maze_seed: int | None = None, cell_size: float = 1.0,
                    success_radius: float | None = None, max_force: float | None = None,
                    episode_steps: int | None = None, n_hazards: int = 0,
                    terminate_on_success: bool = False, goal_in_pixels: bool = False) -> TaskEnv:
    """Force-actuated point mass reaching a goal in a maze (rooms, corridors up to giant, hazard cells).

    Args:
        layout: "open", "2x2", "3x3", "4x4", "giant", "RxC" (e.g. "5x3" rooms), a layout string or a
            `MazeLayout`.
        maze_seed: seed of the generated maze (presets/RxC use a fixed one when None) and of the
            ``n_hazards`` placement.
        cell_size: side of a maze cell in metres.
        success_radius: goal radius in metres (default a quarter cell).
        max_force: motor force bound in N (default 10 N per metre of cell: top speed ~2 cells/s).
        episode_steps: control steps per episode (default 25 per cell of the longest shortest path).
        n_hazards: hazard cells added at random, never cutting the safe cells apart.
        terminate_on_success: end the episode when the goal is reached.
        goal_in_pixels: pixel observations show the goal marker (default: only frames for people do;
            the agent gets its goal as an image).
    """
    task = PointMazeTask(layout=layout, maze_seed=maze_seed, cell_size=cell_size, success_radius=success_radius,
                         max_force=max_force, episode_steps=episode_steps, n_hazards=n_hazards)
    return TaskEnv(task, obs=obs, image_size=image_size, render_mode=render_mode,
                   terminate_on_success=terminate_on_success, goal_in_pixels=goal_in_pixels)
