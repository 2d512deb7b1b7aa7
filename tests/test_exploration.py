"""Exploration for hierarchical planning (issue 6): frontier episodes (go, then explore; bridges
toward unjoined parts) and the slow features that make landmarks places rather than speeds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from agent.launch import load_launch
from agent.trainer import StickyRandomActions, Trainer
from planners import make_planner
from planners.hierarchical import HierarchicalPlanner, HierarchyConfig
from planners.landmarks import slow_features


@pytest.mark.parametrize(("explore_steps", "bridge"), [(0, 0.0), (6, 0.0), (6, 1.0)])
def test_frontier_episodes_go_then_explore(tmp_path, monkeypatch, explore_steps, bridge):
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
        f"training.explore_bridge={bridge}", f"run_dir={tmp_path}"])
    trainer = Trainer(cfg, progress=False)
    random_steps, frontier_calls = [0], []
    sticky, frontier = StickyRandomActions.__call__, trainer.actor.planner.frontier

    def counted(self):
        random_steps[0] += 1
        return sticky(self)

    def recorded(skip=0, z=None):
        frontier_calls.append(z)
        return frontier(skip=skip, z=z)

    monkeypatch.setattr(StickyRandomActions, "__call__", counted)
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
