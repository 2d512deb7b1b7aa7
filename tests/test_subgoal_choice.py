"""Which subgoal the high level picks (issue 6): straight or through landmarks, frontiers and bridges
for exploration, when one counts as reached, and when one is given up."""

from __future__ import annotations

import pytest
import torch

from planners import make_planner
from planners.hierarchical import HierarchicalPlanner, HierarchyConfig


def test_route_goes_straight_when_the_goal_is_near_and_constraints_prune_landmarks():
    steps = lambda z, g: (z - g.expand_as(z)).norm(dim=-1) * 10  # noqa: E731
    line = torch.linspace(0, 1, 11)[:, None].repeat(1, 2)
    high = HierarchicalPlanner(make_planner("mppi", 2, horizon=3, samples=16, elites=4, iterations=1, seed=0),
                               HierarchyConfig(landmarks=11, max_edge=3.0), steps)
    high.build_graph(line, constraint=lambda z, a: (z[:, 0, 0] > 0.75).float())  # "keep out beyond 0.75"
    assert len(high.graph) == 8 and float(high.graph.nodes[:, 0].max()) <= 0.75
    path, _ = high.graph.route(torch.tensor([0.0, 0.0]), torch.tensor([0.7, 0.7]))
    assert len(path) >= 3  # 0.99 apart in latent = 9.9 steps > max_edge: through landmarks
    assert high.graph.route(torch.tensor([0.0, 0.0]), torch.tensor([0.1, 0.1]))[0] == []  # near: straight
    # visits crowd the start of the line: the frontier is the landmark the fewest of them are nearest to
    crowded = torch.cat([line, torch.zeros(50, 2) + 0.05 * torch.rand(50, 2)])
    high.build_graph(crowded)
    assert float(high.frontier()[0]) >= 0.9
    # once it is reached, the next least visited: another landmark, not the crowded start
    assert not torch.equal(high.frontier(skip=1), high.frontier()) and float(high.frontier(skip=1)[0]) > 0.1
    assert float(high.frontier(skip=10_000)[0]) <= 0.1  # past the end: the most visited
    # two parts no edge joins (0.3 -> 0.7 is 5.7 steps > max_edge): from the crowded part, its own
    # least visited landmark, not the other part's (a straight line through a wall, in a maze)
    parts = torch.cat([line[line[:, 0] < 0.35], line[line[:, 0] > 0.65], torch.zeros(50, 2) + 0.05 * torch.rand(50, 2)])
    high.build_graph(parts)
    assert float(high.frontier()[0]) > 0.65
    assert not bool(high.graph.reachable(torch.tensor([0.0, 0.0]))[high.graph.nodes[:, 0] > 0.65].any())
    assert 0.1 < float(high.frontier(z=torch.tensor([0.0, 0.0]))[0]) < 0.35
    assert float(high.frontier(z=torch.tensor([0.9, 0.9]))[0]) > 0.65
    # a bridge: the unreachable landmark next to the reachable part (0.7 against 0.3), none when all are
    assert float(high.bridge(torch.tensor([0.0, 0.0]), choices=1)[0]) == pytest.approx(0.7)
    assert float(high.bridge(torch.tensor([1.0, 1.0]), choices=1)[0]) == pytest.approx(0.3)
    high.build_graph(line)
    assert high.bridge(torch.tensor([0.0, 0.0])) is None
    assert high.reached(torch.tensor([0.5, 0.5]), torch.tensor([0.6, 0.6]))  # 1.4 steps <= reach 2
    assert not high.reached(torch.tensor([0.0, 0.0]), torch.tensor([0.6, 0.6]))
    with pytest.raises(ValueError, match="every landmark violates"):
        high.build_graph(line, constraint=lambda z, a: torch.ones(z.shape[0]))

def test_a_subgoal_that_does_not_come_nearer_is_given_up():
    """stuck_steps: an agent that does not move toward its subgoal (here: not at all) gives it up after that
    many calls and routes round it, the other way; when giving up leaves no route, it forgets and starts over."""
    upper = [(1.0, 0.6), (2.0, 1.0), (3.0, 0.6)]     # the short way to the goal
    lower = [(0.9, -1.0), (2.0, -1.6), (3.1, -1.0)]  # the long way round
    latents = torch.tensor([(0.0, 0.0), *upper, *lower, (4.0, 0.0)])
    steps_fn = lambda z, g: (z - g.expand_as(z)).norm(dim=-1)  # noqa: E731
    high = HierarchicalPlanner(make_planner("mppi", 2, horizon=3, samples=16, elites=4, iterations=1, seed=0),
                               HierarchyConfig(landmarks=8, max_edge=1.5, reach=0.5, stuck_steps=3), steps_fn)
    high.build_graph(latents)
    z0, goal = torch.tensor([0.0, 0.0]), torch.tensor([4.0, 0.0])
    subgoals = [high._subgoal(z0, goal) for _ in range(5)]
    assert float(subgoals[0][1]) > 0 and high.given_up  # first the short way, then given up
    assert float(subgoals[-1][1]) < 0 and len(high.given_up) == 1  # the long way round
    for _ in range(4):
        high._subgoal(z0, goal)  # the long way is given up too: no route is left, so both are forgotten
    assert not high.given_up and float(high._subgoal(z0, goal)[1]) > 0
    high._subgoal(z0, torch.tensor([4.0, 0.1]))  # a new goal: nothing given up
    assert not high.given_up
    with pytest.raises(ValueError, match="stuck_steps"):
        HierarchyConfig(stuck_steps=-1)


def _u_corridor(**config) -> HierarchicalPlanner:
    """A U-shaped corridor walked once (left arm up, across the top, right arm down): its arms lie 0.3 apart,
    3 learned steps through the wall between them. Experience edges, both ways, reach 4 unless given."""
    left = [(0.0, y) for y in torch.linspace(0, 1, 21).tolist()]
    top = [(x, 1.0) for x in (0.05, 0.1, 0.15, 0.2, 0.25)]
    right = [(0.3, y) for y in torch.linspace(1, 0, 21).tolist()]
    walk = torch.tensor(left + top + right)
    steps = lambda z, g: (z - g.expand_as(z)).norm(dim=-1) * 10  # noqa: E731
    config = {"reach": 4.0, **config}
    cfg = HierarchyConfig(landmarks=len(walk), max_edge=3.0, edges="experience", reversible=True, **config)
    planner = HierarchicalPlanner(make_planner("mppi", 2, horizon=3, samples=16, elites=4, iterations=1, seed=0),
                                  cfg, steps)
    planner.build_graph(walk, episodes=torch.zeros(len(walk), dtype=torch.long))
    return planner


def test_nearest_ends_join_the_graph_on_the_agents_side_of_a_wall():
    """ends: nearest. A U-shaped corridor whose arms lie 3 learned steps apart through the wall between them,
    within `reach` (4): joined wherever the cost-to-go rates a landmark near, start and goal look near and the
    agent heads straight at the wall. Joined at their nearest landmark, as visits are labelled for experience
    edges, the route runs round the U, and a subgoal counts as passed once the agent is at it or beyond."""
    start, goal = torch.tensor([0.0, 0.02]), torch.tensor([0.3, 0.02])
    assert _u_corridor(ends="learned").graph.route(start, goal)[0] == []  # 3 steps: "near", straight at the wall
    nearest = _u_corridor(ends="nearest")
    assert nearest.graph.nodes[nearest.graph.locate(start)].tolist() == [0.0, 0.0]
    assert nearest.graph.locate(torch.tensor([5.0, 5.0])) == -1  # near no landmark
    path, via = nearest.graph.route(start, goal)
    assert float(nearest.graph.nodes[path][:, 1].max()) == pytest.approx(1.0) and via > 20  # round the top
    first = nearest._subgoal(start, goal)
    assert float(first[1]) > 0.1 and float(first[0]) == 0.0  # up the left arm, not across
    top_node = next(int(i) for i in path if float(nearest.graph.nodes[i][1]) == 1.0)
    at_top = nearest._subgoal(nearest.graph.nodes[top_node] + 0.01, goal)  # at a landmark of the route: past it
    assert nearest._route_nodes[0] in path[path.index(top_node) + 1:] and float(at_top[1]) < 1.0
    assert nearest.graph.route(torch.tensor([0.3, 0.01]), goal)[0] == []  # at the goal's landmark: straight
    with pytest.raises(ValueError, match="ends"):
        HierarchyConfig(ends="nearest")  # learned edges: no labels to match


def test_pass_within_keeps_the_subgoal_on_the_agents_side_of_a_wall():
    """pass_within: the switching rule's own threshold. Near the top of the U's left arm, `reach` (4 steps)
    also covers the right arm's landmarks 3 steps away through the wall: passing every leading subgoal
    within reach aims the agent across the wall (a 4x4 agent pressed there for 950 steps). With
    pass_within 0 the next subgoal is the one after the landmark the agent is at: round the corner."""
    here, goal = torch.tensor([0.0, 0.9]), torch.tensor([0.3, 0.0])

    def subgoal(pass_within: float | None) -> torch.Tensor:
        return _u_corridor(ends="nearest", pass_within=pass_within)._subgoal(here, goal)

    across = subgoal(None)  # reach: every landmark within 4 steps counts as passed, the right arm's too
    assert float(across[0]) == pytest.approx(0.3) and float(across[1]) < 0.9
    for within in (0.0, 1.0):  # the route's next landmark after the one the agent is at; 1 step: no further
        ahead = subgoal(within)
        assert float(ahead[0]) < 0.3 and float(ahead[1]) > 0.9, (within, ahead)  # up the left arm or on top
    with pytest.raises(ValueError, match="pass_within"):
        HierarchyConfig(pass_within=-1.0)


def test_keep_place_routes_from_the_last_landmark_when_pressed_out_of_its_range():
    """keep_place. Trusted only 1 step (0.1) from a landmark, an agent pressed toward the wall between the U's
    arms is near no landmark; joined wherever the cost-to-go rates landmarks within max_edge (3 steps), the
    right arm beyond the wall is the short way. Counted at the last landmark it was at, the route goes round."""
    here, pressed, goal = torch.tensor([0.0, 0.5]), torch.tensor([0.12, 0.5]), torch.tensor([0.3, 0.02])

    def subgoals(keep_place: bool) -> tuple[torch.Tensor, torch.Tensor]:
        high = _u_corridor(ends="nearest", keep_place=keep_place, reach=1.0)
        first = high._subgoal(here, goal)
        assert high.graph.locate(pressed) == -1  # 1.2 steps from the left arm, 1.8 from the right one
        high._since = high.config.replan_every   # the next call routes afresh
        return first, high._subgoal(pressed, goal)

    for keep_place in (False, True):
        first, _ = subgoals(keep_place)
        assert float(first[0]) == 0.0 and float(first[1]) > 0.5  # up the left arm
    assert float(subgoals(False)[1][0]) == pytest.approx(0.3)  # across the wall
    held = subgoals(True)[1]
    assert float(held[0]) < 0.3 and float(held[1]) > 0.5, held  # still up the left arm
    with pytest.raises(ValueError, match="keep_place"):
        HierarchyConfig(keep_place=True)  # ends: learned has no place to keep


def test_unrouted_toward_follows_the_graph_as_far_as_it_goes_then_heads_for_the_goal():
    """Two parts no edge joins (a maze whose parts no episode went between): with unrouted: direct the agent
    heads straight for a goal in the other part (flat MPC, which a giant maze's walls stop); with toward it
    first goes to the end of its own part nearest the goal, then heads for the goal and does not turn back."""
    steps = lambda z, g: (z - g.expand_as(z)).norm(dim=-1) * 10  # noqa: E731
    line = torch.linspace(0, 1, 11)[:, None].repeat(1, 2)
    parts = line[(line[:, 0] < 0.35) | (line[:, 0] > 0.65)]  # 0..0.3 and 0.7..1: 5.7 steps > max_edge apart

    def planner(unrouted: str) -> HierarchicalPlanner:
        high = HierarchicalPlanner(make_planner("mppi", 2, horizon=3, samples=16, elites=4, iterations=1, seed=0),
                                   HierarchyConfig(landmarks=8, max_edge=3.0, reach=0.5, unrouted=unrouted), steps)
        high.build_graph(parts)
        return high

    z0, goal = torch.tensor([0.0, 0.0]), torch.tensor([1.0, 1.0])
    direct, toward = planner("direct"), planner("toward")
    assert direct.graph.route(z0, goal)[0] == [] and torch.equal(direct._subgoal(z0, goal), goal)
    path, _ = toward.graph.toward(z0, goal)
    assert float(toward.graph.nodes[path[-1]][0]) == pytest.approx(0.3)  # its part's end nearest the goal
    assert 0.0 < float(toward._subgoal(z0, goal)[0]) <= 0.3 + 1e-6       # a subgoal on the way there
    toward._since = toward.config.replan_every                            # the next call routes afresh
    assert torch.equal(toward._subgoal(torch.tensor([0.3, 0.3]), goal), goal)  # there: the goal itself
    toward._since = toward.config.replan_every
    assert torch.equal(toward._subgoal(torch.tensor([0.2, 0.2]), goal), goal)  # and no way back for this goal
    assert float(toward._subgoal(z0, torch.tensor([0.9, 0.9]))[0]) <= 0.3 + 1e-6  # a new goal: the graph again
    assert toward.graph.toward(z0, torch.tensor([0.3, 0.3]))[0] == []      # a goal the graph reaches: route's
    with pytest.raises(ValueError, match="unrouted"):
        HierarchyConfig(unrouted="around")


def test_rated_edge_length_keeps_a_loop_of_far_apart_landmarks_from_looking_short():
    """edge_length. One walk from A (0, 0) to B (1, 0) along a line of 21 landmarks, 0.5 learned steps apart,
    then back round a loop through (1, 1) and (0, 1), 10 learned steps a hop. Counted in the agent's steps
    between visits (the loop's landmarks follow one another in the walk), A to (0, 1) is 1 step and (0, 1)
    to B 2, so the route from A to B goes round the loop (3 against 20); no shorter than the cost-to-go
    rates them (10 and 14.1), it takes the line."""
    line = [(x, 0.0) for x in torch.linspace(0, 1, 21).tolist()]
    walk = torch.tensor(line + [(1.0, 1.0), (0.0, 1.0), (0.0, 0.0)])
    steps = lambda z, g: (z - g.expand_as(z)).norm(dim=-1) * 10  # noqa: E731

    def route(edge_length: str) -> tuple[list[tuple[float, float]], float]:
        cfg = HierarchyConfig(landmarks=len(walk), max_edge=2.0, reach=0.5, edges="experience", reversible=True,
                              ends="nearest", edge_length=edge_length)
        high = HierarchicalPlanner(make_planner("mppi", 2, horizon=3, samples=16, elites=4, iterations=1, seed=0),
                                   cfg, steps)
        high.build_graph(walk, episodes=torch.zeros(len(walk), dtype=torch.long))
        path, length = high.graph.route(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0]))
        return [tuple(high.graph.nodes[i].tolist()) for i in path], length

    loop, short = route("visits")
    assert any(y == 1.0 for _, y in loop) and short == pytest.approx(3.0)  # A, (0, 1), then 2 steps to B
    straight, length = route("rated")
    assert all(y == 0.0 for _, y in straight) and length == pytest.approx(20.0)
    with pytest.raises(ValueError, match="edge_length"):
        HierarchyConfig(edge_length="rated")  # learned edges are the cost-to-go's already
    with pytest.raises(ValueError, match="edge_length"):
        HierarchyConfig(edges="experience", edge_length="metres")


class _GoalDistance:
    """The planners' goal objective: squared distance to ``z_goal`` over the plan."""

    def __init__(self, goal: torch.Tensor):
        self.z_goal = goal

    def set_goal(self, goal: torch.Tensor) -> None:
        self.z_goal = goal

    def __call__(self, z: torch.Tensor, actions: torch.Tensor):
        dist = (z - self.z_goal).square().sum(-1).mean(1)
        return dist, {"goal": dist}


def test_tumble_after_no_progress_holds_a_random_full_force_direction_then_plans_afresh():
    """tumble_after: an agent whose route to the goal does not shorten (here it cannot move at all) holds one
    random direction on the surface of the action box for tumble_steps calls, then plans again; a tumble the
    constraint rules out is not taken, nor one at the goal; off by default."""
    line = torch.linspace(0, 1, 11)[:, None].repeat(1, 2)
    steps_fn = lambda z, g: (z - g.expand_as(z)).norm(dim=-1) * 10  # noqa: E731
    stuck = lambda z, a: z[:, None].expand(-1, a.shape[1], -1)  # noqa: E731
    z0, goal = torch.zeros(2), torch.ones(2)

    def calls(config: HierarchyConfig, n: int, constraint=None, start: torch.Tensor = z0) -> list:
        high = HierarchicalPlanner(make_planner("mppi", 2, horizon=3, samples=16, elites=4, iterations=1, seed=0),
                                   config, steps_fn, seed=0)
        high.build_graph(line)
        return [high.plan(start, stuck, _GoalDistance(goal), constraint) for _ in range(n)]

    plans = calls(HierarchyConfig(landmarks=11, max_edge=3.0, tumble_after=3, tumble_steps=2), 9)
    tumbles = [bool(p.info.get("tumble")) for p in plans]
    # call 1 sets the route's length; calls 2-4 bring no step of progress: the 4th tumbles, and the 5th;
    # then 3 more calls without progress, and the next tumble
    assert tumbles == [False, False, False, True, True, False, False, False, True]
    first, second, third = plans[3].actions, plans[4].actions, plans[8].actions
    torch.testing.assert_close(first, second)  # one direction held
    assert torch.allclose(first, first[0].expand_as(first)) and float(first.abs().max()) == pytest.approx(1.0)
    assert not torch.allclose(third, first)  # a new draw for the next tumble
    assert plans[3].info["route_left"] == plans[2].info["route_left"] and "subgoal" in plans[3].info
    ruled_out = lambda z, a: torch.ones(z.shape[0])  # noqa: E731
    assert not any(p.info.get("tumble") for p in calls(HierarchyConfig(landmarks=11, max_edge=3.0, tumble_after=3),
                                                        6, ruled_out))
    assert not any(p.info.get("tumble") for p in calls(HierarchyConfig(landmarks=11, max_edge=3.0), 6))
    at_goal = goal - 0.05  # within reach (2 steps) of the goal: no step left to gain, no tumble
    assert not any(p.info.get("tumble") for p in calls(HierarchyConfig(landmarks=11, max_edge=3.0, tumble_after=3),
                                                        8, start=at_goal))
    with pytest.raises(ValueError, match="tumble_steps"):
        HierarchyConfig(tumble_steps=0)


def test_goal_only_terms_are_off_toward_a_subgoal_and_on_toward_the_goal():
    """goal_only_terms: a readout's straight-line distance scores the goal only. Toward a subgoal up the U's left
    arm the plan carries no such term; near the goal, heading for it, it does; the cost module is restored."""
    from agent.cost import CostModule

    planner = _u_corridor(ends="nearest", goal_only_terms=["goal:xy"])
    cost = CostModule({"goal": 1.0, "goal:xy": 1.0})
    cost.readout = lambda z, keys: {k: z for k in keys}
    move = lambda z, a: z[:, None] + 0.01 * a.cumsum(1)  # noqa: E731
    goal = torch.tensor([0.3, 0.02])
    cost.set_goal(goal)
    toward_subgoal = planner.plan(torch.tensor([0.0, 0.02]), move, cost)
    assert planner.route and "goal:xy" not in toward_subgoal.terms and "goal" in toward_subgoal.terms
    assert set(cost.active) == {"goal", "goal:xy"} and torch.equal(cost.z_goal, goal)
    planner.reset()  # a new episode, started beside the goal
    toward_goal = planner.plan(torch.tensor([0.3, 0.05]), move, cost)
    assert not planner.route and "goal:xy" in toward_goal.terms
    plain = _u_corridor(ends="nearest").plan(torch.tensor([0.0, 0.02]), move, cost)
    assert "goal:xy" in plain.terms  # off by default
    with pytest.raises(ValueError, match="goal_only_terms"):
        HierarchyConfig(goal_only_terms="goal:xy")
    with pytest.raises(ValueError, match="not in this cost"), cost.muted(["action"]):
        pass
    with cost.muted(["goal:xy"]), cost.muted(["goal:xy"]):  # muted above (a third level), muted again
        assert set(cost.active) == {"goal"}
    assert set(cost.active) == {"goal", "goal:xy"}
    with pytest.raises(ValueError, match="no active cost term"), cost.muted(["goal", "goal:xy"]):
        pass


def test_goal_within_keeps_the_agent_at_its_goal_when_the_goals_landmark_is_another():
    """goal_within: at the goal, the agent is located at one landmark and the goal at the next; the route
    then leads to that landmark, past the goal (a 4x4 agent was pulled 0.5 m off its goal this way). With the
    goal within goal_within steps the agent heads for the goal itself; a goal further off keeps its route."""
    walk = torch.stack([torch.linspace(0, 1, 11), torch.zeros(11)], 1)  # landmarks 1 learned step apart
    steps = lambda z, g: (z - g.expand_as(z)).norm(dim=-1) * 10  # noqa: E731

    def planner(goal_within: float | None) -> HierarchicalPlanner:
        cfg = HierarchyConfig(landmarks=11, max_edge=3.0, reach=2.0, edges="experience", reversible=True,
                              ends="nearest", pass_within=0.3, goal_within=goal_within)
        high = HierarchicalPlanner(make_planner("mppi", 2, horizon=3, samples=16, elites=4, iterations=1, seed=0),
                                   cfg, steps)
        high.build_graph(walk, episodes=torch.zeros(11, dtype=torch.long))
        return high

    here, goal = torch.tensor([0.52, 0.0]), torch.tensor([0.56, 0.0])  # at landmark 0.5; the goal's is 0.6
    assert float(planner(None)._subgoal(here, goal)[0]) == pytest.approx(0.6)  # off the goal, to its landmark
    assert torch.equal(planner(0.5)._subgoal(here, goal), goal)  # 0.4 steps away: straight for the goal
    far = torch.tensor([0.96, 0.0])
    assert 0.55 < float(planner(0.5)._subgoal(here, far)[0]) < 0.9  # 4.4 steps: a landmark of the route
    with pytest.raises(ValueError, match="goal_within"):
        HierarchyConfig(goal_within=-1.0)
