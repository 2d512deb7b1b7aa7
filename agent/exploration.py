"""Random exploration policies: what fills the replay before the first update, and the random steps
an exploring episode takes from each frontier it reaches (``training.random_actions``).

Both act in the trainer's action box [-1, 1]^A and are reset at the start of every episode.

- ``sticky``: a uniform random action held for 1..``max_hold`` steps (10).
- ``tumble`` (run and tumble): a random direction at full force (on the surface of the action box),
  held for 1..``max_hold`` steps (100), or until the agent is stuck: ``patience`` steps in a row in
  which the observation changed by less than ``stall`` times the median change of this episode so
  far. Against a wall the agent slides along it to a corner, then turns. In 4x4 rooms of PointMaze
  (3x3-cell rooms, one-cell doors) 20 random episodes joined 16 rooms into one group this way, and
  left 7 groups of 14 with sticky actions (room groups: rooms that some episode went between);
  BENCHMARKS.md, "4x4 rooms: run and tumble".
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

RANDOM_ACTIONS = ("sticky", "tumble")


class RandomActions(Protocol):
    def reset(self) -> None: ...

    def __call__(self, obs: Any) -> np.ndarray: ...


class StickyRandomActions:
    """A uniform random action held for a random 1..``max_hold`` steps, which covers more ground than
    independent noise for the same number of steps."""

    def __init__(self, action_dim: int, rng: np.random.Generator, max_hold: int = 10):
        self.action_dim, self.rng, self.max_hold = action_dim, rng, max_hold
        self.reset()

    def reset(self) -> None:
        self._action, self._left = np.zeros(self.action_dim, dtype=np.float32), 0

    def __call__(self, obs: Any = None) -> np.ndarray:
        if self._left <= 0:
            self._action = self.rng.uniform(-1, 1, self.action_dim).astype(np.float32)
            self._left = int(self.rng.integers(1, self.max_hold + 1))
        self._left -= 1
        return self._action


class RunAndTumble:
    """A random full-force direction held until it runs out (1..``max_hold`` steps) or the agent is
    stuck (see the module docstring); needs the observations, which it compares step to step."""

    def __init__(self, action_dim: int, rng: np.random.Generator, max_hold: int = 100, stall: float = 0.2,
                 patience: int = 3):
        self.action_dim, self.rng = action_dim, rng
        self.max_hold, self.stall, self.patience = max_hold, stall, patience
        self.reset()

    def reset(self) -> None:
        self._action, self._left, self._slow = np.zeros(self.action_dim, dtype=np.float32), 0, 0
        self._previous: np.ndarray | None = None
        self._changes: list[float] = []

    def __call__(self, obs: Any) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float32)
        if self._previous is not None and self._previous.shape == obs.shape:
            change = float(np.linalg.norm(obs - self._previous))
            self._changes.append(change)
            stuck = change < self.stall * float(np.median(self._changes))
            self._slow = self._slow + 1 if stuck else 0
        self._previous = obs
        if self._left <= 0 or self._slow >= self.patience:
            direction = self.rng.standard_normal(self.action_dim)
            self._action = (direction / max(np.abs(direction).max(), 1e-12)).astype(np.float32)
            self._left, self._slow = int(self.rng.integers(1, self.max_hold + 1)), 0
        self._left -= 1
        return self._action


def make_random_actions(kind: str, action_dim: int, rng: np.random.Generator) -> RandomActions:
    if kind == "sticky":
        return StickyRandomActions(action_dim, rng)
    if kind == "tumble":
        return RunAndTumble(action_dim, rng)
    raise ValueError(f"random actions must be one of {RANDOM_ACTIONS}, got {kind!r}")


def coverage(layout: str, kinds: tuple[str, ...] = RANDOM_ACTIONS, episodes: int = 20, seed: int = 0) -> list[dict]:
    """What random episodes of each kind cover in a PointMaze layout (real physics, the same starts):
    distinct cells per episode, and the cell groups the episodes join (agent.graph_audit.cell_groups),
    the bound on what a graph read from this experience can join."""
    from agent.graph_audit import cell_groups
    from envs import make

    env = make("oda/PointMaze-v0", obs="state", layout=layout)
    task = env.unwrapped.task
    rows = []
    for kind in kinds:
        walk = make_random_actions(kind, env.action_space.shape[0], np.random.default_rng(seed))
        cells, lengths, per_episode = [], [], []
        for episode in range(episodes):
            obs, info = env.reset(seed=seed * 100_003 + episode)
            walk.reset()
            trail, done = [task.layout.xy_to_cell(info["measurements"]["agent_xy"], task.cell_size)], False
            while not done:
                obs, _, terminated, truncated, info = env.step(walk(obs))
                trail.append(task.layout.xy_to_cell(info["measurements"]["agent_xy"], task.cell_size))
                done = terminated or truncated
            cells.extend(trail)
            lengths.append(len(trail))
            per_episode.append(len(set(trail)))
        groups = cell_groups(np.asarray(cells), lengths)
        sizes = np.bincount(list(groups.values()))
        rows.append({"layout": layout, "random_actions": kind, "episodes": episodes,
                     "cells_per_episode": round(float(np.mean(per_episode)), 2), "visited_cells": len(groups),
                     "cell_groups": len(sizes), "largest_cell_group": int(sizes.max()),
                     "free_cells": len(task.layout.free_cells())})
    return rows


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m agent.exploration", description=coverage.__doc__.split(":")[0])
    p.add_argument("layout", nargs="?", default="4x4", help="a PointMaze layout: 2x2, 4x4, giant, ...")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for row in coverage(args.layout, episodes=args.episodes, seed=args.seed):
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
