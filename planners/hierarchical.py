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
   direction held for ``tumble_steps`` calls instead (where the constraint allows it); the cost terms in
   ``goal_only_terms`` are off while the target is a subgoal (the objective's ``muted``).

Landmarks that the constraint rules out (e.g. inside a keep-out zone, read out from the latent) are
not used as subgoals: guardrails hold at the high level too, where readouts can judge a latent.
The low level may itself be a ``HierarchicalPlanner`` (a third level, with shorter edges than
the one above): it reads the subgoal it is given as its goal. ``Plan.info`` carries ``subgoals``
(one per level, top first), ``subgoal`` (the one the actions aim at) and ``route_left``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor

from planners.base import Constraint, Dynamics, Plan
from planners.hierarchy_config import HierarchyConfig
from planners.landmarks import (
    LandmarkGraph,
    StepsFn,
    experience_weights,
    farthest_point_sample,
    pairwise_steps,
    slow_features,
)
from planners.tumble import StepProgress, Tumble


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
        self._progress = StepProgress()      # toward the route's first landmark (stuck_steps)
        self._progress_node = -1
        self._tumble = Tumble(config.tumble_after, config.tumble_steps, low.action_dim, self.generator)
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
        self.given_up, self._avoiding, self._route_nodes, self._progress_node = [], None, [], -1
        self._progress.reset()
        self._partial = self._beyond = False  # following a route `toward` the goal; past its end
        self._place = -1
        self._tumble.reset()

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
            self._tumble.reset()
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
        if self.route and self.config.goal_within is not None and self.reached(z0, goal, self.config.goal_within):
            self.route.clear()  # at the goal: no landmark near it pulls the agent off (goal_within)
            self._route_nodes.clear()
        return self.route[0] if self.route else goal

    def _stuck(self, z0: Tensor) -> bool:
        """Whether the current subgoal is to be given up (``stuck_steps``): the cost-to-go to it has not
        fallen by a step in that many calls. Then it joins ``given_up``."""
        node = self._route_nodes[0] if self.config.stuck_steps and self._route_nodes else -1
        if node != self._progress_node:
            self._progress.reset()
            self._progress_node = node
        if node < 0:
            return False
        steps = float(self.steps(z0[None], self.graph.nodes[node][None])[0])
        if self._progress.stalled(steps) < self.config.stuck_steps:
            return False
        self.given_up.append(node)
        self._progress.reset()
        self._progress_node = -1
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
        mute = self.config.goal_only_terms if subgoal is not goal else ()
        objective.set_goal(subgoal)
        try:
            with objective.muted(mute) if mute else nullcontext():
                plan = self._tumble_plan(z0, goal, dynamics, objective, constraint)
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
        """``tumble_after``: the tumble's plan for this call, or None. Progress is the route's length to the goal;
        no tumble with the goal within ``reach`` (the first trial tumbled a 4x4 agent off its goal). After a
        tumble the low level plans afresh: its warm start still presses where the agent was stuck."""
        if not self.config.tumble_after:
            return None
        if not self._tumble.left and self.reached(z0, goal):
            self._tumble.reset()
            return None
        steps = self.route_steps if self.route_steps is not None else float(self.steps(z0[None], goal[None])[0])
        plan = self._tumble.plan(z0, steps, self.horizon, dynamics, objective, constraint)
        if plan is not None and not self._tumble.left:
            self.low.reset()
        return plan
