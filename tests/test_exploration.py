"""Exploration for hierarchical planning (issue 6): frontier episodes (go, then explore; bridges
toward unjoined parts) and the slow features that make landmarks places rather than speeds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from agent.exploration import RunAndTumble, StickyRandomActions, coverage, main, make_random_actions
from agent.graph_audit import cell_groups, episode_coverage
from agent.launch import load_launch
from agent.trainer import Trainer
from envs import make
from planners import make_planner
from planners.hierarchical import HierarchicalPlanner, HierarchyConfig
from planners.landmarks import slow_features


@pytest.mark.parametrize(("explore_steps", "bridge", "kind"), [(0, 0.0, "sticky"), (6, 0.0, "tumble"),
                                                               (6, 1.0, "sticky")])
def test_frontier_episodes_go_then_explore(tmp_path, monkeypatch, explore_steps, bridge, kind):
    """Exploring training episodes head for the least visited landmark the graph can route to from
    where the agent is, and with ``explore_steps`` take that many random steps on reaching each one
    (a reach this wide counts every landmark as reached at once). With ``explore_bridge`` they look
    for a landmark out of reach first (in an open room there is none: the frontier is used)."""
    launch = Path(__file__).parent.parent / "launch" / "demo.yaml"
    cfg = load_launch(launch, [
        "training.steps=160", "training.seed_steps=80", "training.batch_size=16", "training.eval_every=0",
        "training.checkpoint_every=0", "training.episode_steps=40", "world_model.latent_dim=8",
        "world_model.hidden_dim=32", "world_model.train_horizon=3", "world_model.value_hidden=32",
        "planner.params.samples=16", "planner.params.elites=4", "planner.params.horizon=3",
        "planner.params.iterations=1", "hierarchy={landmarks: 8, max_edge: 8.0, reach: 1000.0, replan_every: 4}",
        "training.explore_frontier=1.0", f"training.explore_steps={explore_steps}",
        f"training.explore_bridge={bridge}", f"training.random_actions={kind}", f"run_dir={tmp_path}"])
    trainer = Trainer(cfg, progress=False)
    random_steps, frontier_calls = [0], []
    explorer = type(trainer.explore)
    assert explorer is {"sticky": StickyRandomActions, "tumble": RunAndTumble}[kind]
    random_action, frontier = explorer.__call__, trainer.actor.planner.frontier

    def counted(self, obs):
        random_steps[0] += 1
        return random_action(self, obs)

    def recorded(skip=0, z=None):
        frontier_calls.append(z)
        return frontier(skip=skip, z=z)

    monkeypatch.setattr(explorer, "__call__", counted)
    bridge_calls, bridge_of = [], trainer.actor.planner.bridge

    def bridged(z):
        target = bridge_of(z)
        bridge_calls.append(target)
        return target

    trainer.actor.planner.frontier, trainer.actor.planner.bridge = recorded, bridged
    trainer.train()
    assert all(z is not None for z in frontier_calls)
    assert len(frontier_calls) + sum(t is not None for t in bridge_calls) >= 2  # one target per head
    assert len(bridge_calls) >= 2 if bridge else not bridge_calls
    wandered = random_steps[0] - 80  # the 80 seed steps are random too
    assert wandered == 0 if explore_steps == 0 else wandered >= 2 * explore_steps


def test_slow_features_find_the_place_not_the_speed():
    """Latents that mix a slowly drifting position with a fast changing velocity (by a random rotation):
    the two slowest directions read the position back and nothing of the velocity; landmarks spread in
    them (place_dims) cover the places, where spread in the whole latent they chase the speed."""
    gen = torch.Generator().manual_seed(0)
    steps, episodes = 4000, 4
    vel = torch.randn(steps, 2, generator=gen) * 10.0                      # fast: redrawn every step
    pos = torch.cumsum(torch.randn(steps, 2, generator=gen) * 0.05, 0)       # slow: a random walk
    ids = torch.arange(steps) // (steps // episodes)
    mix = torch.linalg.qr(torch.randn(4, 4, generator=gen))[0]
    latents = torch.cat([pos, vel], 1) @ mix

    def r2(features, target):
        x = torch.cat([features, torch.ones(len(features), 1)], 1).double()
        fit = x @ torch.linalg.lstsq(x, target.double()).solution
        return 1 - ((fit - target) ** 2).sum(0) / ((target - target.mean(0)) ** 2).sum(0)

    key = slow_features(latents, ids, 2)
    assert key(latents).shape == (steps, 2) and key(latents[0]).shape == (2,)
    assert bool((r2(key(latents), pos) > 0.95).all()) and bool((r2(key(latents), vel) < 0.05).all())
    with pytest.raises(ValueError, match="count must be in"):
        slow_features(latents, ids, 5)
    steps_fn = lambda z, g: (z - g.expand_as(z)).norm(dim=-1)  # noqa: E731
    spread = {}
    for dims in (0, 2):
        high = HierarchicalPlanner(make_planner("mppi", 2, horizon=3, samples=16, elites=4, iterations=1, seed=0),
                                   HierarchyConfig(landmarks=32, max_edge=50.0, reach=50.0, edges="experience",
                                                   place_dims=dims), steps_fn)
        high.build_graph(latents, episodes=ids)
        index = torch.cdist(high.graph.nodes, latents).argmin(1)
        spread[dims] = float(torch.cdist(pos[index], pos).min(0).values.max())  # the farthest place from a landmark
    assert spread[2] < 0.75 * spread[0]  # 0.56 vs 0.93 here
    with pytest.raises(ValueError, match="place_dims .* needs edges: experience"):
        HierarchyConfig(place_dims=2)


def test_run_and_tumble_turns_when_stuck():
    """A full-force direction (on the surface of the action box) held while the observation moves; three
    steps in a row with next to no change (against a wall) and it turns, long before its hold runs out."""
    walk = RunAndTumble(3, np.random.default_rng(0), max_hold=1000)
    obs, first = np.zeros(3), None
    for _ in range(20):  # moving: the same action all along
        action = walk(obs)
        first = action if first is None else first
        assert np.array_equal(action, first)
        obs = obs + 0.1
    assert np.abs(first).max() == pytest.approx(1.0) and bool((np.abs(first) <= 1.0).all())
    stuck = [walk(obs + 1e-4 * i) for i in range(4)]  # the first call still sees the last move
    assert all(np.array_equal(a, first) for a in stuck[:3]) and not np.array_equal(stuck[3], first)
    walk.reset()  # a new episode: no memory of the last observation or of the changes
    assert np.array_equal(walk(obs), walk(obs))  # the very first call draws; a still agent is not stuck yet
    with pytest.raises(ValueError, match="random actions must be one of"):
        make_random_actions("brownian", 2, np.random.default_rng(0))


def test_run_and_tumble_crosses_more_doors_than_sticky_actions():
    """On 4x4 rooms of PointMaze (real physics, the same 4 starts): run and tumble goes through more
    doors than sticky random actions (here 10 room changes against 2)."""
    env = make("oda/PointMaze-v0", obs="state", layout="4x4", episode_steps=600)
    layout, cell = env.unwrapped.task.layout, env.unwrapped.task.cell_size
    crossings = {}
    for kind in ("sticky", "tumble"):
        walk, rooms = make_random_actions(kind, 2, np.random.default_rng(1)), 0
        for episode in range(4):
            obs, info = env.reset(seed=episode)
            walk.reset()
            last, done = None, False
            while not done:
                obs, _, terminated, truncated, info = env.step(walk(obs))
                done = terminated or truncated
                r, c = layout.xy_to_cell(info["measurements"]["agent_xy"], cell)
                room = None if r % 4 == 0 or c % 4 == 0 else ((r - 1) // 4, (c - 1) // 4)  # None: a doorway
                if room is not None and room != last:
                    rooms, last = rooms + (last is not None), room
        crossings[kind] = rooms
    assert crossings["tumble"] >= 2 * max(crossings["sticky"], 1), crossings


def test_coverage_benchmark_counts_cells_and_groups(capsys):
    """python -m agent.exploration: per kind of random actions, the cells its episodes cover and the
    groups they join, consistent with each other (2x2 rooms, 3 episodes)."""
    assert main(["2x2", "--episodes", "3"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["random_actions"] for r in rows] == ["sticky", "tumble"]
    for r in rows:
        assert 1 <= r["cells_per_episode"] <= r["visited_cells"] <= r["free_cells"] == 40
        assert 1 <= r["cell_groups"] <= 3 and r["largest_cell_group"] <= r["visited_cells"]
    assert rows == coverage("2x2", episodes=3)  # the same starts and random generator: the same figures


def test_cell_groups_join_the_cells_an_episode_went_between():
    """Two episodes in cells (0,0)->(0,1) and (5,5)->(5,6)->(5,5) stay two groups; a third that steps
    from (0,1) into (5,5) (as through a door) joins them."""
    cells = np.array([(0, 0), (0, 0), (0, 1), (5, 5), (5, 6), (5, 5), (9, 9), (9, 9)])
    groups = cell_groups(cells, [3, 3, 2])
    assert len(groups) == 5 and len(set(groups.values())) == 3
    assert groups[(0, 0)] == groups[(0, 1)] != groups[(5, 5)] == groups[(5, 6)] != groups[(9, 9)]
    joined = cell_groups(np.concatenate([cells, [(0, 1), (5, 5)]]), [3, 3, 2, 2])
    assert len(set(joined.values())) == 2 and joined[(0, 0)] == joined[(5, 6)]


def test_evaluation_episodes_are_sorted_by_whether_their_start_and_goal_cells_were_visited():
    env = make("oda/PointMaze-v0", layout="4x4")
    task = env.unwrapped.task
    cells = []
    for seed in (1_000_000, 1_000_001):
        _, info = env.reset(seed=seed)
        cells.append([task.layout.xy_to_cell(info["measurements"][k], task.cell_size) for k in ("agent_xy", "goal_xy")])
    (start0, goal0), (start1, goal1) = cells
    records = [{"seed": 1_000_000, "success": True}, {"seed": 1_000_001, "success": False}]
    visited = {start0, goal0} - {start1, goal1}
    assert {start0, goal0} <= visited, "the two episodes share a cell: choose other seeds"
    assert episode_coverage(env, visited, records) == {"both_visited": {"episodes": 1, "success": 1},
                                                       "neither_visited": {"episodes": 1, "success": 0}}
    assert episode_coverage(env, visited | {start1}, records)["goal_unvisited"] == {"episodes": 1, "success": 0}
    assert episode_coverage(env, visited | {goal1}, records)["start_unvisited"] == {"episodes": 1, "success": 0}
