"""Hierarchical planning (issue 6): landmark graph, coarse model, and the two-level planner in the
PointMaze simulator."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import envs
import envs.tasks.point_maze  # noqa: F401  (registers oda/PointMaze-v0)
from agent.actor import episode_goal
from agent.build import build_landmarks, make_actor, make_env
from agent.cli import main
from agent.cost import CostModule
from agent.graph_audit import audit
from agent.record import subgoal_markers
from agent.snapshot import load_agent, load_replay
from planners import make_planner
from planners.hierarchical import HierarchicalPlanner, HierarchyConfig
from planners.landmarks import LandmarkGraph, experience_weights, farthest_point_sample, shortest_paths
from world_models.coarse import CoarseModel, sample_coarse_windows
from world_models.encoders import normalize_latent

# Two rooms side by side; the wall between them is open only along the bottom row, so the
# straight line from S to G is blocked.
U_MAZE = "#######\n#..#..#\n#..#..#\n#.....#\n#######"


def test_shortest_paths_chain_short_edges_and_report_unreachable_nodes():
    inf = math.inf
    w = torch.tensor([[0, 1, inf, 9], [1, 0, 2, inf], [inf, 2, 0, 1], [9, inf, 1, 0]], dtype=torch.float32)
    w = torch.cat([torch.cat([w, torch.full((4, 1), inf)], 1), torch.full((1, 5), inf)])  # node 4: isolated
    dist, hop = shortest_paths(w)
    assert float(dist[0, 3]) == 4.0 and int(hop[0, 3]) == 1  # 0 -> 1 -> 2 -> 3 beats the direct 9
    assert math.isinf(float(dist[0, 4])) and int(hop[0, 4]) == -1


def test_farthest_point_sample_spreads_over_clusters():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = (centres[:, None] + 0.1 * torch.randn(3, 50, 2, generator=gen)).reshape(-1, 2)
    chosen = points[farthest_point_sample(points, 3, gen)]
    assert len({tuple(torch.round(c / 5).tolist()) for c in chosen}) == 3  # one per cluster


class Geodesic:
    """A stand-in for the learned cost-to-go on the U maze: 4 steps per cell of BFS distance
    between the cells that positions fall in (the test's only privileged part: what GoalValue
    learns from experience; the planner sees only this function)."""

    def __init__(self, layout):
        self.layout = layout
        free = [tuple(c) for c in np.argwhere(~layout.walls)]
        self.index = {c: i for i, c in enumerate(free)}
        self.table = torch.tensor(np.array([[layout.distances_from(a)[b] for b in free] for a in free]),
                                  dtype=torch.float32) * 4.0

    def cells(self, xy: torch.Tensor) -> torch.Tensor:
        flat = xy.reshape(-1, 2).numpy()
        return torch.tensor([self.index[self.layout.xy_to_cell(p)] for p in flat]).reshape(xy.shape[:-1])

    def __call__(self, z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        g = g.expand_as(z)
        return self.table[self.cells(z), self.cells(g)]


def drive(env, planner, steps: int = 160) -> tuple[bool, list]:
    """Plan with a kinematic model of the ball (latent = position) and act in the simulator."""
    obs, _ = env.reset(seed=0, options={"start_cell": (1, 1), "goal_cell": (1, 4)})
    cost = CostModule({"goal": 1.0})
    cost.set_goal(torch.as_tensor(env.unwrapped.goal_observation()[:2]))
    planner.reset()
    subgoals = []
    for _ in range(steps):
        plan = planner.plan(torch.as_tensor(obs[:2]), lambda z, a: z[:, None] + 0.1 * torch.cumsum(a, 1), cost)
        subgoals.append(plan.info.get("subgoal"))
        obs, _, terminated, truncated, info = env.step(plan.actions[0].numpy())
        planner.shift(1)
        if info.get("success"):
            return True, subgoals
    return False, subgoals


def test_subgoals_lead_around_the_wall_in_the_simulator():
    """Landmarks are positions the ball visited; the high level routes through the opening at the
    bottom, and the ball reaches the goal in the real simulator. Planning flat toward the goal
    with the same low level presses against the wall."""
    env = envs.make("oda/PointMaze-v0", layout=U_MAZE)
    layout = env.unwrapped.task.layout
    visited = torch.as_tensor(np.array([env.reset(seed=s)[0][:2] for s in range(300)]))
    steps = Geodesic(layout)

    def low():
        return make_planner("mppi", 2, horizon=6, samples=64, elites=8, iterations=2, seed=0)

    high = HierarchicalPlanner(low(), HierarchyConfig(landmarks=40, max_edge=4.5, reach=2.0, replan_every=5), steps)
    graph = high.build_graph(visited)
    assert isinstance(graph, LandmarkGraph) and len(graph) == 40
    reached, subgoals = drive(env, high)
    rows = {layout.xy_to_cell(s.numpy())[0] for s in subgoals if s is not None}
    assert 3 in rows  # a subgoal in the bottom corridor: the way around the wall
    assert reached
    flat_reached, _ = drive(env, low())
    assert not flat_reached


def test_experience_edges_join_landmarks_along_the_episodes_only():
    """Exact weights: the fewest steps between latents of two landmarks within one episode; no edge
    across an episode boundary, from latents beyond ``radius`` of every landmark, or past max_edge."""
    steps = lambda z, g: (z - g.expand_as(z)).norm(dim=-1) * 10  # noqa: E731  (10 steps per unit)
    nodes = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    xs = [0.0, 0.2, 1.0, 2.0, 3.0, 0.5, 2.9]  # episode 0: 0, 0, 1, 2; episode 1: 3, none, 3
    latents = torch.tensor([[x, 0.0] for x in xs])
    episodes = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    w = experience_weights(nodes, latents, episodes, steps, max_edge=2.0, radius=3.0)
    inf = math.inf
    expected = torch.tensor([[inf, 1, 2, inf], [inf, inf, 1, inf], [inf, inf, inf, inf], [inf, inf, inf, inf]])
    assert torch.equal(w, expected)  # 2 -> 3 would join the two episodes; 0 -> 2 from t=0 is 3 > max_edge steps
    back = experience_weights(nodes, latents, episodes, steps, max_edge=2.0, radius=3.0, reversible=True)
    assert torch.equal(back, torch.minimum(expected, expected.T))
    graph = LandmarkGraph(nodes, steps, 2.0, weights=back, trusted=3.0)
    assert graph.path(2, 0) == [2, 0] and graph.path(0, 3) == []
    with pytest.raises(ValueError, match="edge weights must be \\[4, 4\\]"):
        LandmarkGraph(nodes, steps, 2.0, weights=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="latents \\[M, D\\] and episodes \\[M\\]"):
        experience_weights(nodes, latents, episodes[:3], steps, 2.0, 3.0)
    # a guardrail rules out the visited latent at x = 1.0 (t = 2): no edge spans it any more
    blocked = torch.tensor([False, False, True, False, False, False, False])
    cut = experience_weights(nodes, latents, episodes, steps, max_edge=2.0, radius=3.0, blocked=blocked)
    assert torch.equal(cut, torch.full((4, 4), inf))  # 0 -> 1, 0 -> 2, 1 -> 2 all pass through t = 2
    late = torch.tensor([False, False, False, True, False, False, False])  # only t = 3 (x = 2.0) ruled out
    only = experience_weights(nodes, latents, episodes, steps, max_edge=2.0, radius=3.0, blocked=late)
    assert only[0, 1] == 1 and torch.isinf(only[0, 2]) and torch.isinf(only[1, 2])
    with pytest.raises(ValueError, match="blocked must be \\[M\\] = \\[7\\]"):
        experience_weights(nodes, latents, episodes, steps, 2.0, 3.0, blocked=blocked[:3])
    high = HierarchicalPlanner(make_planner("mppi", 2, horizon=3, samples=16, elites=4, iterations=1, seed=0),
                               HierarchyConfig(landmarks=4, edges="experience"), steps)
    with pytest.raises(ValueError, match="'experience' join landmarks along the agent's episodes"):
        high.build_graph(latents)
    with pytest.raises(ValueError, match="edges must be one of"):
        HierarchyConfig(edges="straight")


def test_experience_edges_route_around_a_wall_that_the_learned_distance_jumps():
    """A cost-to-go with a wormhole: it rates positions by their straight-line distance, through the
    wall. Landmarks joined by it route straight at the wall and the ball stays in its room; joined
    by where the ball's own random episodes went, the route takes the corridor and the ball
    reaches the goal in the simulator."""
    env = envs.make("oda/PointMaze-v0", layout=U_MAZE)
    layout = env.unwrapped.task.layout
    rng = np.random.default_rng(0)
    visited, episodes = [], []
    for episode in range(30):  # random walks: a random push held for 10 steps at a time
        obs, _ = env.reset(seed=episode)
        for t in range(80):
            if t % 10 == 0:
                push = rng.uniform(-1, 1, 2)
            visited.append(obs[:2])
            episodes.append(episode)
            obs, *_ = env.step(push)
    visited, episodes = torch.as_tensor(np.array(visited)), torch.tensor(episodes)
    wormhole = lambda z, g: (z - g.expand_as(z)).norm(dim=-1) * 4.0  # noqa: E731  (4 steps per cell)

    def high(edges):
        low = make_planner("mppi", 2, horizon=6, samples=64, elites=8, iterations=2, seed=0)
        planner = HierarchicalPlanner(low, HierarchyConfig(landmarks=40, max_edge=12.0, reach=2.0, replan_every=5,
                                                           edges=edges, reversible=True), wormhole)
        planner.build_graph(visited, episodes=episodes)
        return planner

    reached, subgoals = drive(env, high("experience"))
    rows = {layout.xy_to_cell(s.numpy())[0] for s in subgoals if s is not None}
    assert 3 in rows and reached  # through the corridor along the bottom row
    learned_reached, _ = drive(env, high("learned"))
    assert not learned_reached


# The open room of launch/pointmaze-hazards.yaml: two hazard cells across the middle, between S and G.
HAZARD_STRIP = "#######\n#.....#\n#.....#\n#..x..#\n#..x..#\n#.....#\n#######"


def test_experience_edges_do_not_span_what_a_guardrail_rules_out_in_the_simulator():
    """The ball's episodes cross the hazard strip, so experience joins landmarks on either side of it
    even once the landmarks inside are pruned. With the visited latents that break the guardrail
    cutting the edges that span them, no edge crosses the strip, and the ball, routed round it,
    reaches the goal in the simulator without entering a hazard cell."""
    env = envs.make("oda/PointMaze-v0", layout=HAZARD_STRIP)
    rng = np.random.default_rng(0)
    visited, episodes = [], []
    for episode in range(50):  # random walks, and ten straight across the strip as a greedy agent goes
        across = episode >= 40
        obs, _ = env.reset(seed=episode, options={"start_cell": (3 + episode % 2, 1)} if across else None)
        for t in range(80):
            if t % 10 == 0:
                push = np.array([1.0, 0.0]) if across else rng.uniform(-1, 1, 2)
            visited.append(obs[:2])
            episodes.append(episode)
            obs, *_ = env.step(push)
    visited, episodes = torch.as_tensor(np.array(visited)), torch.tensor(episodes)
    low_box, high_box = torch.tensor([-0.5, -1.5]) - 0.15, torch.tensor([0.5, 0.5]) + 0.15

    def keep_out(z, a):  # latent = position: the depth inside the hazard box grown by a margin, summed
        depth = torch.minimum(z[..., :2] - low_box, high_box - z[..., :2]).min(-1).values
        return torch.relu(depth).sum(-1)

    straight = lambda z, g: (z - g.expand_as(z)).norm(dim=-1) * 4.0  # noqa: E731  (4 steps per metre)
    cfg = HierarchyConfig(landmarks=60, max_edge=20.0, reach=2.0, replan_every=5, edges="experience",
                          reversible=True)
    low = lambda: make_planner("mppi", 2, horizon=6, samples=64, elites=8, iterations=2, seed=0)  # noqa: E731
    safe = HierarchicalPlanner(low(), cfg, straight)
    safe.build_graph(visited, constraint=keep_out, episodes=episodes)
    # the same landmarks with the edges through the strip kept (as before the cut)
    weights = experience_weights(safe.graph.nodes, visited, episodes, straight, cfg.max_edge, cfg.reach, True)
    nodes = safe.graph.nodes
    beside = (nodes[:, 1] > -1.5) & (nodes[:, 1] < 0.5)  # rows the strip covers: across it is through it
    across = (beside & (nodes[:, 0] < -0.5))[:, None] & (beside & (nodes[:, 0] > 0.5))[None, :]
    assert torch.isfinite(weights[across]).any()  # the greedy episodes' edges, kept without the cut
    assert not torch.isfinite(safe.graph.weights[across]).any()

    def run(planner):
        obs, _ = env.reset(seed=0, options={"start_cell": (3, 1), "goal_cell": (3, 5)})
        cost = CostModule({"goal": 1.0})
        cost.set_goal(torch.as_tensor(env.unwrapped.goal_observation()[:2]))
        planner.reset()
        hazard_steps = 0
        for _ in range(200):
            plan = planner.plan(torch.as_tensor(obs[:2]), lambda z, a: z[:, None] + 0.1 * torch.cumsum(a, 1), cost,
                                keep_out)
            obs, _, _, _, info = env.step(plan.actions[0].numpy())
            planner.shift(1)
            hazard_steps += int(info["safety"]["hazard"])
            if info.get("success"):
                return True, hazard_steps
        return False, hazard_steps

    assert run(safe) == (True, 0)


def test_coarse_model_learns_where_k_steps_toward_a_subgoal_lead():
    """On a great circle of the latent space walked at constant speed either way, F(z_t, z_t+j)
    -> z_t+k is learnable from the subgoal's direction; it starts as "stays put" and ends well
    below that error.

    Why this test does not compare against k composed one-step predictions: the coarse model's
    high-level action is a subgoal latent, not the k actions taken. Composing one-step predictions
    needs those actions, which the high level does not have when it looks ahead (it has not
    planned them yet). With them, the comparison would grade a better-informed predictor against
    a less-informed one. Its test is whether it learns where heading for a subgoal leads."""
    torch.manual_seed(0)
    k, dim = 4, 8
    model = CoarseModel(dim, 64, k)
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    u, v = torch.linalg.qr(torch.randn(dim, 2) - torch.randn(dim, 2).mean(0))[0].T  # orthonormal
    u, v = u - u.mean(), v - v.mean()

    def windows(n):
        start = torch.rand(n, 1, 1) * 2 * math.pi
        sign = torch.where(torch.rand(n, 1, 1) < 0.5, -1.0, 1.0)
        theta = start + sign * 0.1 * torch.arange(2 * k + 1).float()[None, :, None]
        return normalize_latent(torch.cos(theta) * u + torch.sin(theta) * v)  # [n, 2k+1, dim]

    first_rel = None
    for _ in range(300):
        z, z_k, g = sample_coarse_windows(windows(128), k)
        loss, logs = model.loss(z, z_k, g)
        first_rel = first_rel if first_rel is not None else float(logs["coarse/loss_rel"])
        optim.zero_grad()
        loss.backward()
        optim.step()
    _, logs = model.loss(*sample_coarse_windows(windows(512), k))
    assert first_rel > 0.5 and float(logs["coarse/loss_rel"]) < 0.2
    with pytest.raises(ValueError, match="at least k \\+ 1"):
        sample_coarse_windows(windows(4)[:, :k], k)


def test_hierarchical_agent_trains_and_evaluates_through_the_cli(tmp_path, capsys):
    """A tiny agent with the cost-to-go and the coarse model, trained and evaluated with a
    hierarchy: the coarse model's loss is logged, eval routes over landmarks from the replay (with
    learned or experience edges; the audit finds no wormhole in an open room), and a hierarchy
    without a cost-to-go or with an unknown key is refused by name. (The barely trained cost-to-go
    rates even consecutive states ~10 steps apart, hence the wide reach for experience edges.)"""
    launch = Path(__file__).parent.parent / "launch" / "demo.yaml"
    tiny = ["training.steps=200", "training.seed_steps=120", "training.batch_size=16", "training.eval_every=200",
            "training.eval_episodes=1", "training.checkpoint_every=0", "training.episode_steps=40",
            "world_model.latent_dim=8", "world_model.hidden_dim=32", "world_model.train_horizon=3",
            "world_model.value_hidden=32", "world_model.coarse_k=4", "planner.params.samples=32",
            "planner.params.elites=8", "planner.params.horizon=4", "planner.params.iterations=2"]
    hierarchy = "hierarchy={landmarks: 16, max_edge: 8.0, reach: 1.0, replan_every: 4}"
    run = tmp_path / "run"
    assert main(["train", str(launch), *tiny, hierarchy, "training.explore_frontier=0.5", "training.explore_steps=5",
                 f"run_dir={run}",
                 "--quiet"]) == 0
    tags = EventAccumulator(str(run / "tb")).Reload().Tags()["scalars"]
    assert "coarse/loss" in tags and "coarse/loss_rel" in tags
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 1
    assert main(["eval", str(run), "hierarchy=null", "--episodes", "1", "--json"]) == 0  # the same agent, flat
    assert json.loads(capsys.readouterr().out)["episodes"] == 1
    experience = "hierarchy={landmarks: 16, max_edge: 20.0, reach: 20.0, edges: experience, reversible: true}"
    assert main(["eval", str(run), experience, "--episodes", "2", "--json", "--per-episode"]) == 0  # edges from
    evaluated = json.loads(capsys.readouterr().out)  # the replay's episodes
    report = audit(str(next(run.glob("step_*"))), [experience], episodes=evaluated["per_episode"])
    assert report["edges_kind"] == "experience" and report["landmarks"] == 16 and report["edges"] > 0
    by_coverage = report["episodes_by_coverage"]  # each evaluation episode sorted by its start and goal cells
    assert sum(k["episodes"] for k in by_coverage.values()) == 2
    assert sum(k["success"] for k in by_coverage.values()) == round(2 * evaluated["success_rate"])
    assert set(by_coverage) <= {"both_visited", "start_unvisited", "goal_unvisited", "neither_visited"}
    assert len(report["unvisited_cells"]) == report["free_cells"] - report["visited_cells"]
    assert report["wormholes"] == 0  # an open room has no wall to jump through
    assert 1 <= report["graph_parts"] <= 16 and report["largest_part_landmarks"] <= 16
    assert report["cell_groups"] >= 1 and report["largest_cell_group"] <= report["visited_cells"]
    # the landmarks are read from at most experience_steps visited observations: one 40-step episode (41)
    few = "hierarchy={landmarks: 64, max_edge: 20.0, reach: 20.0, edges: experience, experience_steps: 41}"
    assert audit(str(next(run.glob("step_*"))), [few])["landmarks"] == 41
    assert audit(str(next(run.glob("step_*"))), [few.replace("41}", "200}")])["landmarks"] == 64
    capsys.readouterr()
    assert main(["eval", str(run), few.replace("41}", "0}"), "--episodes", "1"]) != 0
    assert "experience_steps must be an int >= 1" in capsys.readouterr().err

    cfg, model = load_agent(next(run.glob("step_*")), torch.device("cpu"))
    env = make_env(cfg)
    actor = make_actor(cfg, model, 2, torch.device("cpu"), env=env)
    assert isinstance(actor.planner, HierarchicalPlanner)
    assert build_landmarks(actor, load_replay(next(run.glob("step_*"))).observations()) == 16
    obs, _ = env.reset(seed=3)
    actor.reset(episode_goal(env, actor))
    actor.act(obs)
    assert actor.last_plan.info["subgoal"].shape == (8,) and actor.last_plan.info["coarse_next"].shape == (8,)
    markers = subgoal_markers(actor, 0.03)  # read out to positions for `oda record`
    assert len(markers) == 2 + len(actor.planner.route[1:]) and all(np.isfinite(m[0]).all() for m in markers)
    assert main(["record", str(run), "--episodes", "1", "--out", str(tmp_path / "h.mp4"), "--size", "64"]) == 0
    assert json.loads(capsys.readouterr().out)["frames"] == 41

    assert main(["eval", str(run), "hierarchy={landmarks: 16, bogus: 1}", "--episodes", "1"]) == 2
    assert "'hierarchy'" in capsys.readouterr().err
    assert main(["train", str(launch), *tiny, "world_model.value_hidden=0", hierarchy,
                 f"run_dir={tmp_path / 'bad'}", "--quiet"]) == 2
    assert "hierarchy needs the learned cost-to-go" in capsys.readouterr().err
    assert main(["train", str(launch), *tiny, "training.explore_frontier=0.5", f"run_dir={tmp_path / 'bad'}"]) == 2
    assert "'training.explore_frontier' heads for landmarks: it needs a 'hierarchy'" in capsys.readouterr().err


def test_a_third_level_nests_and_reads_the_subgoal_above_as_its_goal():
    """Levels compose: the middle level routes (over finer edges) to the subgoal the top level
    gives it, and the objective's goal is the task's again after every plan."""
    steps = lambda z, g: (z - g.expand_as(z)).norm(dim=-1) * 10  # noqa: E731
    visited = torch.stack([torch.linspace(0, 2, 41), torch.zeros(41)], 1)
    low = make_planner("mppi", 2, horizon=3, samples=16, elites=4, iterations=1, seed=0)
    middle = HierarchicalPlanner(low, HierarchyConfig(landmarks=41, max_edge=2.0, reach=0.5), steps)
    top = HierarchicalPlanner(middle, HierarchyConfig(landmarks=9, max_edge=6.0, reach=0.5), steps)
    middle.build_graph(visited)
    top.build_graph(visited)
    cost = CostModule({"goal": 1.0})
    goal = torch.tensor([2.0, 0.0])
    cost.set_goal(goal)
    plan = top.plan(torch.zeros(2), lambda z, a: z[:, None] + 0.1 * torch.cumsum(a, 1), cost)
    torch.testing.assert_close(cost.z_goal, goal)
    top_subgoal = top.route[0]
    assert 0.0 < float(top_subgoal[0]) <= 0.6 + 1e-6  # within the top level's 6-step edges
    assert float(plan.info["subgoal"][0]) <= 0.2 + 1e-6  # the middle level's finer step toward it
    assert [float(g[0]) for g in plan.info["subgoals"]] == [float(top_subgoal[0]), float(plan.info["subgoal"][0])]
    assert torch.equal(middle._goal, top_subgoal)
