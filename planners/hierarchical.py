"""Hierarchical planning (issue 6): a high level that picks latent subgoals over a landmark graph,
a low level that plans actions toward the current subgoal.

    high = HierarchicalPlanner(low_planner, HierarchyConfig(max_edge=10), steps=model.cost_to_go,
                               coarse=model.coarse)
    high.build_graph(replay_latents)                # landmarks + all-pairs routes, once per model
    plan = high.plan(z0, model.rollout, cost)       # the same call as any planner's

It is used exactly like a flat planner (``plan``, ``shift``, ``reset``, ``horizon``): the
objective must be a goal cost (``agent.cost.CostModule``: ``z_goal`` and ``set_goal``). On each
high-level step (every ``replan_every`` executed actions, or when the goal changes) it routes from
the current latent to the goal through the landmark graph (``planners.landmarks``). Then, on every
call:

1. it drops the route's leading subgoals that are already within ``reach`` steps (switching rule,
   ``pass_within`` steps where given;
   with ``ends: nearest`` also those up to the landmark the agent is at, ``LandmarkGraph.locate``);
   with ``stuck_steps: n``, a subgoal the cost-to-go has not brought 1 step nearer in n calls is
   given up: routes to this goal leave that landmark out (all given up are forgotten when that
   leaves no route), and the route is planned afresh (a subgoal behind a wall, or round a corner
   the low level's horizon does not see past); with ``keep_place``, an agent at no landmark counts
   as at the last one it was at;
2. it points the objective at the first remaining subgoal (the goal itself once the route is
   empty, or when the goal is nearer than any route through landmarks; where no route reaches the
   goal, the goal too, unless ``unrouted: toward``: then the route ends at the landmark it can reach
   that the cost-to-go puts nearest the goal, and from there, for this goal, the goal itself);
3. it runs the low-level planner, constraint (guardrails) included, and restores the goal; with
   ``tumble_after: n``, once the route to the goal has not shortened in n calls, a random full-force
   direction held for ``tumble_steps`` calls instead (where the constraint allows it).

Landmarks that the constraint rules out (e.g. inside a keep-out zone, read out from the latent) are
not used as subgoals: guardrails hold at the high level too, where readouts can judge a latent.
The low level may itself be a ``HierarchicalPlanner`` (a third level, with shorter edges than
the one above): it reads the subgoal it is given as its goal. ``Plan.info`` carries ``subgoals``
(one per level, top first), ``subgoal`` (the one the actions aim at) and ``route_left``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from planners.base import Constraint, Dynamics, Plan, check_float, check_int
from planners.landmarks import (
    LandmarkGraph,
    StepsFn,
    experience_weights,
    farthest_point_sample,
    pairwise_steps,
    slow_features,
)

EDGE_KINDS = ("learned", "experience")
END_KINDS = ("learned", "nearest")
UNROUTED_KINDS = ("direct", "toward")
EDGE_LENGTHS = ("visits", "rated")


@dataclass
class HierarchyConfig:
    landmarks: int = 256        # subgoal candidates: a farthest-point sample of the agent's latents
    max_edge: float = 10.0      # join landmarks the cost-to-go rates at most this many steps apart
    reach: float = 2.0          # a subgoal within this many steps counts as reached: go to the next
    replan_every: int = 10      # executed actions between two routings (the high level's time scale)
    # what joins landmarks: "learned" (the cost-to-go rates them <= max_edge apart) or "experience"
    # (the agent's episodes went from one to the other within max_edge steps; a visited latent
    # belongs to a landmark within `reach` steps of it both ways): see planners.landmarks
    edges: str = "learned"
    reversible: bool = False    # experience edges also join in reverse (motions that can be undone)
    # an experience edge's length: "visits", the fewest steps the agent took from a visit of one landmark to
    # one of the other (two neighbouring landmarks' visits meet at their border: 1 step, however far apart
    # the landmarks are); "rated", no less than the cost-to-go's rating of the two landmarks (both ways,
    # if reversible). With "visits" an OGBench giant agent's route to a landmark 6 steps away went round a
    # 5-hop loop of 1-2 step edges, and back, for 500 steps (BENCHMARKS.md)
    edge_length: str = "visits"
    # experience edges: how many visited observations (whole episodes at random) the landmarks and
    # edges are read from; a 40k-step 4x4 replay read at 20k left landmarks on 83 of its 124 cells
    experience_steps: int = 20_000
    # > 0: landmarks are spread, counted (frontier) and matched to visits in the place_dims slowest
    # directions of the visited latents (where the agent is, not how fast it moves: slow_features);
    # 0: in the whole latent. Needs the visits in time order: experience edges.
    place_dims: int = 0
    # > 0: give up a subgoal that the cost-to-go has not seen come 1 step nearer in this many calls
    # (not entered again until the goal changes or the episode ends); 0: never give up
    stuck_steps: int = 0
    # where the current latent and the goal join the graph (experience edges): "learned", at every
    # landmark the cost-to-go rates within `reach`; "nearest", at the nearest landmark in the key
    # (place_dims, else the latent) as visited latents are labelled, and a subgoal counts as passed
    # once the agent is at it or at a later landmark of the route (LandmarkGraph.locate)
    ends: str = "learned"
    # the switching rule's threshold: a leading subgoal the cost-to-go puts within this many steps is
    # passed; None: `reach`. The cost-to-go does not see every wall: with `reach: 8` a 4x4 agent
    # passed the landmark in a door and pressed for 950 steps toward the next one, across the wall
    # beside it. 0 (with ends: nearest) passes a subgoal only once the agent is at it (locate).
    pass_within: float | None = None
    # with ends: nearest, where the agent is at no landmark (between two, or pressed against a wall out of
    # its landmark's range), count it at the last landmark it was at this episode, for routing and passing.
    # False: join the graph wherever the cost-to-go rates a landmark near, which a smooth cost-to-go does
    # through walls (an OGBench giant agent 7 m from its goal flipped for 550 steps between a route round
    # the wall and one across it, as it came in and out of its landmark's range: BENCHMARKS.md)
    keep_place: bool = False
    # when no route joins the agent to the goal (their parts of the graph are apart, or the goal is
    # near no landmark): "direct", head for the goal (flat MPC from there); "toward", first follow the
    # graph to the landmark it can reach that the cost-to-go puts nearest the goal, then head for it
    unrouted: str = "direct"
    # > 0: when the route's length to the goal (the high level's own estimate, in steps) has not fallen by a
    # step in this many calls, tumble: hold a random full-force direction for `tumble_steps` calls, then plan
    # afresh without the low level's warm start (skipped where the constraint rules the tumble out). Against a
    # door's frame a 4x4 agent's model predicted the ball through the wall and the way through the door as
    # no better, and it pressed there for 550 steps (BENCHMARKS.md, "tumble_after"). 0: never.
    tumble_after: int = 0
    tumble_steps: int = 15

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.edges not in EDGE_KINDS:
            raise ValueError(f"edges must be one of {EDGE_KINDS}, got {self.edges!r}")
        if not isinstance(self.reversible, bool):
            raise ValueError(f"reversible must be true or false, got {self.reversible!r}")
        check_int("landmarks", self.landmarks, 2)
        check_float("max_edge", self.max_edge, 0.0, low_open=True)
        check_float("reach", self.reach, 0.0)
        check_int("replan_every", self.replan_every, 1)
        check_int("experience_steps", self.experience_steps, 1)
        check_int("place_dims", self.place_dims, 0)
        check_int("stuck_steps", self.stuck_steps, 0)
        check_int("tumble_after", self.tumble_after, 0)
        check_int("tumble_steps", self.tumble_steps, 1)
        if not isinstance(self.keep_place, bool):
            raise ValueError(f"keep_place must be true or false, got {self.keep_place!r}")
        if self.pass_within is not None:
            check_float("pass_within", self.pass_within, 0.0)
        if self.edge_length not in EDGE_LENGTHS:
            raise ValueError(f"edge_length must be one of {EDGE_LENGTHS}, got {self.edge_length!r}")
        if self.edge_length != "visits" and self.edges != "experience":
            raise ValueError("edge_length sets the length of experience edges: it needs edges: experience")
        if self.ends not in END_KINDS:
            raise ValueError(f"ends must be one of {END_KINDS}, got {self.ends!r}")
        if self.unrouted not in UNROUTED_KINDS:
            raise ValueError(f"unrouted must be one of {UNROUTED_KINDS}, got {self.unrouted!r}")
        if self.ends == "nearest" and self.edges != "experience":
            raise ValueError("ends: nearest joins a latent to a landmark as experience edges label visits: "
                             "it needs edges: experience")
        if self.keep_place and self.ends != "nearest":
            raise ValueError("keep_place holds the landmark that ends: nearest located the agent at: it needs "
                             "ends: nearest")
        if self.place_dims and self.edges != "experience":
            raise ValueError("place_dims reads the slow directions off the agent's steps in time order: "
                             "it needs edges: experience")


def _identity(z: Tensor) -> Tensor:
    return z


class HierarchicalPlanner:
    """Landmark-graph subgoals over any low-level planner; see the module docstring."""

    def __init__(self, low: Any, config: HierarchyConfig, steps: StepsFn, coarse: Any = None,
                 seed: int | None = None):
        self.low, self.config, self.steps, self.coarse = low, config, steps, coarse
        self.graph: LandmarkGraph | None = None
        self.visited: Tensor | None = None   # the latents the graph was built from
        self.key: Callable[[Tensor], Tensor] = _identity  # what landmarks are spread and matched in
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(0 if seed is None else seed)
        self.route: list[Tensor] = []        # subgoal latents still to visit, next first
        self.route_steps: float | None = None
        self.given_up: list[int] = []        # landmarks given up this episode (stuck_steps)
        self._avoiding: LandmarkGraph | None = None  # the graph without them
        self._route_nodes: list[int] = []    # the route's landmark indices
        self._progress: tuple[int, float, int] = (-1, math.inf, 0)  # (landmark, nearest steps, calls since)
        self._place = -1                     # the last landmark the agent was located at (keep_place)
        self._goal: Tensor | None = None
        self._since = 0
        self._partial = self._beyond = False

    # -- the planner interface, delegated ---------------------------------------------------------
    @property
    def horizon(self) -> int:
        return self.low.horizon

    @property
    def action_dim(self) -> int:
        return self.low.action_dim

    @property
    def device(self) -> torch.device:
        return self.low.device

    @property
    def warm_start(self) -> Tensor | None:
        return self.low.warm_start

    @property
    def proposal(self) -> Any:
        return self.low.proposal

    @proposal.setter
    def proposal(self, value: Any) -> None:
        self.low.proposal = value

    def reset(self, seed: int | None = None) -> None:
        """New episode: no route, the low level's warm start dropped; ``seed`` restarts both generators."""
        self.low.reset(seed)
        if seed is not None:
            self.generator.manual_seed(seed)
        self._clear_route()

    def _clear_route(self) -> None:
        self.route, self.route_steps, self._goal, self._since = [], None, None, 0
        self.given_up, self._avoiding, self._route_nodes, self._progress = [], None, [], (-1, math.inf, 0)
        self._partial = self._beyond = False  # following a route `toward` the goal; past its end
        self._place = -1
        self._clear_tumble()

    def _clear_tumble(self) -> None:
        self._tumble: tuple[float, int] = (math.inf, 0)  # (shortest route seen, calls since it fell by a step)
        self._tumble_left, self._tumble_dir = 0, None

    def shift(self, steps: int = 1) -> None:
        self.low.shift(steps)
        self._since += steps

    # -- the high level ---------------------------------------------------------------------------
    @torch.no_grad()
    def build_graph(self, latents: Tensor, constraint: Constraint | None = None,
                    episodes: Tensor | None = None) -> LandmarkGraph:
        """Landmarks from latents [M, D] the agent visited (farthest-point sample), minus those the
        constraint rules out (checked as a one-step trajectory with a zero action). Experience edges
        (``edges: experience``) need the latents in time order and ``episodes`` [M], the episode of each;
        none spans a visited latent the constraint rules out."""
        cfg = self.config
        latents = latents.to(self.device, torch.float32)
        self.key = _identity
        if cfg.place_dims:
            if episodes is None:
                raise ValueError("hierarchy place_dims needs the latents in time order and their episode ids")
            self.key = slow_features(latents, torch.as_tensor(episodes, device=latents.device), cfg.place_dims)
        nodes = latents[farthest_point_sample(self.key(latents), cfg.landmarks, self.generator)]
        if constraint is not None:
            nodes = nodes[~self._ruled_out(nodes, constraint)]
            if nodes.shape[0] == 0:
                raise ValueError("every landmark violates the constraint: no subgoal is safe")
        weights = None
        if cfg.edges == "experience":
            if episodes is None:
                raise ValueError("hierarchy edges 'experience' join landmarks along the agent's episodes: "
                                 "build_graph needs the latents in time order and their episode ids")
            blocked = None if constraint is None else self._ruled_out(latents, constraint)
            weights = experience_weights(nodes, latents, torch.as_tensor(episodes), self.steps, cfg.max_edge,
                                         cfg.reach, cfg.reversible, blocked=blocked, key=self.key)
            if cfg.edge_length == "rated":
                rated = pairwise_steps(nodes, self.steps)
                weights = torch.maximum(weights, torch.maximum(rated, rated.T) if cfg.reversible else rated)
        self.graph = LandmarkGraph(nodes, self.steps, cfg.max_edge, weights=weights,
                                   trusted=cfg.reach if weights is not None else None,
                                   key=self.key if cfg.ends == "nearest" else None)
        self.visited = latents
        self._clear_route()  # routes and landmarks given up were in the old graph's indices
        return self.graph

    def _ruled_out(self, latents: Tensor, constraint: Constraint, chunk: int = 4096) -> Tensor:
        """Which latents [M, D] the constraint rules out, each as a one-step trajectory, zero action."""
        out = []
        for part in latents.split(chunk):
            zero = torch.zeros(part.shape[0], 1, self.action_dim, device=part.device)
            out.append(constraint(part[:, None], zero) > 0)
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool, device=latents.device)

    @torch.no_grad()
    def frontier(self, skip: int = 0, z: Tensor | None = None) -> Tensor:
        """The least visited landmark: the one nearest (in latent L2, or in the place_dims key) to the
        fewest of the latents the graph was built from. Heading there is how the agent explores what
        it has barely seen.
        ``skip=k`` gives the k-th least visited instead (the next one once the first is reached).
        With ``z`` [D], the current latent: only landmarks the graph can route to from z. A landmark
        in a part of the maze no episode joined to this one is a straight line through walls away
        (on a 4x4-rooms agent the graph fell into 5 such parts at 10k steps, each a few rooms)."""
        if self.graph is None:
            raise RuntimeError("frontier needs a landmark graph: call build_graph first")
        nearest = torch.cdist(self.key(self.visited), self.key(self.graph.nodes)).argmin(1)
        counts = torch.bincount(nearest, minlength=len(self.graph))
        order = torch.argsort(counts, stable=True)
        if z is not None:
            order = order[self.graph.reachable(z.to(self.device, torch.float32))[order]]
        return self.graph.nodes[int(order[min(skip, len(order) - 1)])]

    @torch.no_grad()
    def bridge(self, z: Tensor, choices: int = 4) -> Tensor | None:
        """A landmark the graph cannot route to from latent z [D], next (in the key landmarks are
        matched in: ``place_dims``) to one it can: one of the ``choices`` nearest such, at random.
        None when every landmark is reachable. Episodes that head there press toward a part of the
        maze no episode has joined to this one, and may find the door between them (random steps
        cross a 4x4-rooms door about 1.4 times in 950 steps)."""
        if self.graph is None:
            raise RuntimeError("bridge needs a landmark graph: call build_graph first")
        reach = self.graph.reachable(z.to(self.device, torch.float32))
        if bool(reach.all()):
            return None
        keys = self.key(self.graph.nodes)
        gap = torch.cdist(keys[~reach], keys[reach]).min(1).values
        near = torch.argsort(gap)[:choices]
        pick = near[int(torch.randint(len(near), (1,), generator=self.generator))]
        return self.graph.nodes[~reach][pick]

    @torch.no_grad()
    def reached(self, z: Tensor, target: Tensor, within: float | None = None) -> bool:
        """Whether the learned cost-to-go puts ``target`` within ``within`` (default ``reach``) steps of
        ``z`` (both [D]); 0: never."""
        within = self.config.reach if within is None else within
        if within <= 0:
            return False
        z, target = z.to(self.device, torch.float32), target.to(self.device, torch.float32)
        return float(self.steps(z[None], target[None])[0]) <= within

    def _subgoal(self, z0: Tensor, goal: Tensor) -> Tensor:
        new_goal = self._goal is None or not torch.equal(goal, self._goal)
        if new_goal:
            self.given_up, self._avoiding, self._beyond = [], None, False
            self._clear_tumble()
        stuck = not new_goal and self._stuck(z0)
        if stuck:  # this goal's routes go round the landmarks given up (a Floyd-Warshall each time)
            avoid = torch.zeros(len(self.graph), dtype=torch.bool, device=self.graph.nodes.device)
            avoid[self.given_up] = True
            self._avoiding = self.graph.without(avoid)
        at = self.graph.locate(z0)
        if self.config.keep_place:
            at = self._place = at if at >= 0 else self._place
        if new_goal or stuck or self._since >= self.config.replan_every:
            graph = self.graph if self._avoiding is None else self._avoiding
            self._route_nodes, self.route_steps = graph.route(z0, goal, at=at)
            if not self._route_nodes and self._avoiding is not None:  # giving up cut the way: forget them
                self.given_up, self._avoiding = [], None
                self._route_nodes, self.route_steps = self.graph.route(z0, goal, at=at)
            self._partial = False
            if not self._route_nodes and self.config.unrouted == "toward" and not self._beyond:
                graph = self.graph if self._avoiding is None else self._avoiding
                self._route_nodes, steps = graph.toward(z0, goal)  # [] where a route exists or is near
                self._partial = bool(self._route_nodes)
                if self._partial:
                    self.route_steps = steps
            self.route = [self.graph.nodes[i] for i in self._route_nodes]
            self._goal, self._since = goal.clone(), 0
        passed = self._route_nodes.index(at) + 1 if at in self._route_nodes else 0
        del self.route[:passed], self._route_nodes[:passed]
        while self.route and self.reached(z0, self.route[0], self.config.pass_within):
            self.route.pop(0)
            self._route_nodes.pop(0)
        if self._partial and not self.route:  # as far as the graph goes: for this goal, no way back there
            self._partial, self._beyond = False, True
        return self.route[0] if self.route else goal

    def _stuck(self, z0: Tensor) -> bool:
        """Whether the current subgoal is to be given up (``stuck_steps``): the cost-to-go to it has not
        fallen by a step in that many calls. Then it joins ``given_up``."""
        if not self.config.stuck_steps or not self._route_nodes:
            self._progress = (-1, math.inf, 0)
            return False
        node = self._route_nodes[0]
        steps = float(self.steps(z0[None], self.graph.nodes[node][None])[0])
        last, nearest, calls = self._progress
        if node != last or steps <= nearest - 1.0:
            self._progress = (node, steps, 0)
            return False
        self._progress = (node, nearest, calls + 1)
        if calls + 1 < self.config.stuck_steps:
            return False
        self.given_up.append(node)
        self._progress = (-1, math.inf, 0)
        return True

    def plan(self, z0: Tensor, dynamics: Dynamics, objective: Any, constraint: Constraint | None = None) -> Plan:
        """Plan toward the current subgoal of the route to ``objective.z_goal`` (see the module doc)."""
        goal = getattr(objective, "z_goal", None)
        if self.graph is None or goal is None:  # no landmarks yet, or nothing to route to: flat
            return self.low.plan(z0, dynamics, objective, constraint)
        start = time.perf_counter()
        z0 = z0.detach().to(self.device, torch.float32)
        goal = goal.to(self.device, torch.float32)
        with torch.no_grad():
            subgoal = self._subgoal(z0, goal)
        high_ms = (time.perf_counter() - start) * 1e3
        objective.set_goal(subgoal)
        try:
            plan = self._tumble_plan(z0, goal, dynamics, objective, constraint) if self.config.tumble_after else None
            if plan is None:
                plan = self.low.plan(z0, dynamics, objective, constraint)
        finally:
            objective.set_goal(goal)
        finer = plan.info.get("subgoals", [])  # set by a hierarchical level below this one
        plan.info.update(subgoals=[subgoal, *finer], subgoal=finer[-1] if finer else subgoal,
                         route_left=len(self.route), route_steps=self.route_steps, given_up=len(self.given_up),
                         high_ms=high_ms,
                         elapsed_ms=plan.info.get("elapsed_ms", 0.0) + high_ms)
        if self.coarse is not None and not finer:  # where k steps toward the subgoal lead (`oda record`)
            with torch.no_grad():
                plan.info["coarse_next"] = self.coarse(z0, subgoal)
        return plan

    @torch.no_grad()
    def _tumble_plan(self, z0: Tensor, goal: Tensor, dynamics: Dynamics, objective: Any,
                     constraint: Constraint | None) -> Plan | None:
        """The tumble's plan for this call (``tumble_after``), or None: plan as usual. The tumble starts once the
        route to ``goal`` has not shortened by a step in ``tumble_after`` calls, unless the goal is within
        ``reach`` (the first trial tumbled a 4x4 agent off its goal); it is scored by the objective
        (pointed at the subgoal) like any plan, and dropped where the constraint rules it out."""
        if self._tumble_left == 0:
            if self.reached(z0, goal):  # at the goal there is no step left to gain: stay
                self._tumble = (math.inf, 0)
                return None
            steps = self.route_steps if self.route_steps is not None else float(self.steps(z0[None], goal[None])[0])
            best, calls = self._tumble
            if steps <= best - 1.0:
                self._tumble = (steps, 0)
                return None
            self._tumble = (best, calls + 1)
            if calls + 1 < self.config.tumble_after:
                return None
            direction = torch.randn(self.action_dim, generator=self.generator)
            self._tumble_dir = (direction / direction.abs().max().clamp_min(1e-12)).to(self.device)
            self._tumble_left = self.config.tumble_steps
        actions = self._tumble_dir.expand(self.horizon, -1)[None]
        latents = dynamics(z0[None], actions)
        if constraint is not None and float(constraint(latents, actions)[0]) > 0:
            self._clear_tumble()
            return None
        cost, terms = objective(latents, actions)
        self._tumble_left -= 1
        if self._tumble_left == 0:  # then plan afresh: the warm start still presses where the agent was stuck
            self._clear_tumble()
            self.low.reset()
        return Plan(actions=actions[0].clone(), latents=latents[0], cost=float(cost[0]),
                    terms={k: float(v[0]) for k, v in terms.items()}, info={"tumble": True})
