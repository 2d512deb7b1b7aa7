"""A graph of landmark latents for the high level of hierarchical planning (issue 6).

Landmarks are latent states the agent has visited: a farthest-point sample of encoded replay
observations, so they spread over everything the agent has seen (in a maze: every room and
corridor it explored). Two landmarks are joined when a learned cost-to-go (e.g.
``JEPAWorldModel.cost_to_go``) rates them at most ``max_edge`` steps apart: the learned distance
is trusted only at short range, where it is accurate, and long distances come from chaining short
edges. All-pairs shortest paths (Floyd-Warshall, with next hops) are computed once per graph; a
query from the current latent to a goal latent is then one batched cost-to-go call to connect
both ends and an argmin.

A learned distance can be wrong in a way that shortest paths seek out: a "wormhole", two
landmarks on either side of a wall rated a few steps apart. Routes then run through the wall. On
a 4x4-rooms agent, 5.7% of the learned edges were wormholes, and 62% of the routes between random
landmarks used one (``python -m agent.graph_audit``). ``experience_weights`` joins landmarks only
where the agent's own episodes went from one to the other within ``max_edge`` steps (weight: the
fewest steps seen), and no episode passes through a wall; the learned distance then only decides,
at short range (``radius``), which landmark a visited latent belongs to.

Nothing here reads privileged state: nodes are latents, edges come from a learned function or
from the agent's own experience.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

StepsFn = Callable[[Tensor, Tensor], Tensor]  # (z [..., D], g [..., D]) -> steps [...]


def farthest_point_sample(latents: Tensor, count: int, generator: torch.Generator | None = None) -> Tensor:
    """Indices of ``count`` rows of latents [M, D] spread out in L2 (greedy farthest-point order)."""
    m = latents.shape[0]
    if m == 0:
        raise ValueError("farthest_point_sample needs at least one latent")
    count = min(count, m)
    first = int(torch.randint(m, (1,), generator=generator))
    chosen = [first]
    nearest = (latents - latents[first]).pow(2).sum(-1)
    for _ in range(count - 1):
        nxt = int(nearest.argmax())
        chosen.append(nxt)
        nearest = torch.minimum(nearest, (latents - latents[nxt]).pow(2).sum(-1))
    return torch.tensor(chosen, dtype=torch.long, device=latents.device)


def shortest_paths(weights: Tensor) -> tuple[Tensor, Tensor]:
    """Floyd-Warshall on edge weights [N, N] (inf = no edge): (distances [N, N], next hop [N, N], -1
    where unreachable)."""
    n = weights.shape[0]
    dist = weights.clone()
    dist.fill_diagonal_(0.0)
    columns = torch.arange(n, device=weights.device).expand(n, n)
    hop = torch.where(torch.isfinite(dist), columns, torch.full_like(columns, -1))
    for k in range(n):
        via = dist[:, k:k + 1] + dist[k:k + 1, :]
        better = via < dist
        dist = torch.where(better, via, dist)
        hop = torch.where(better, hop[:, k:k + 1].expand(n, n), hop)
    return dist, hop


@torch.no_grad()
def slow_features(latents: Tensor, episodes: Tensor, count: int, eps: float = 1e-6) -> Callable[[Tensor], Tensor]:
    """The ``count`` slowest directions of visited latents [M, D] (time order; ``episodes`` [M]):
    linear slow feature analysis, the directions along which latents change least from one step to
    the next relative to how much they vary over all visits. Returns key(z [..., D]) -> [..., count],
    each feature of unit variance over the visits.

    Why: a latent holds where the agent is and how fast it moves. Spread, counted and matched in
    the whole latent, landmarks are places at speeds: on a 4x4-rooms agent their median speed was
    1.3 against 0.2 for the visits, so "least visited" counted speeds as much as places. Where
    the agent is changes slowly and its speed quickly, so the slowest features are the place,
    learned from the agent's own steps, with no position given."""
    d = latents.shape[-1]
    if not 1 <= count <= d:
        raise ValueError(f"slow features: count must be in [1, {d}] (the latent size), got {count}")
    same = episodes[1:] == episodes[:-1]
    if int(same.sum()) < d:
        raise ValueError(f"slow features need at least {d} consecutive steps within episodes, got {int(same.sum())}")
    latents = latents.double()
    mean = latents.mean(0)
    var, basis = torch.linalg.eigh(torch.cov((latents - mean).T).reshape(d, d))
    whiten = basis / var.clamp_min(eps).sqrt()                        # [D, D]: unit variance, decorrelated
    delta = (latents[1:] - latents[:-1])[same] @ whiten
    _, slow = torch.linalg.eigh(delta.T @ delta / delta.shape[0])     # ascending: slowest first
    project = (whiten @ slow[:, :count]).float()
    mean = mean.float()
    return lambda z: (z - mean.to(z.device)) @ project.to(z.device)


@torch.no_grad()
def label_visits(latents: Tensor, nodes: Tensor, steps: StepsFn, radius: float, node_keys: Tensor,
                 key: Callable[[Tensor], Tensor]) -> Tensor:
    """The landmark [M] (long) each latent of latents [M, D] is at: its nearest in the key (``node_keys``
    = ``key(nodes)``), when ``steps`` rates the two at most ``radius`` apart both ways; else -1."""
    label = torch.cdist(key(latents), node_keys).argmin(1)
    near = (steps(latents, nodes[label]) <= radius) & (steps(nodes[label], latents) <= radius)
    return torch.where(near, label, torch.full_like(label, -1))


@torch.no_grad()
def pairwise_steps(nodes: Tensor, steps: StepsFn, chunk: int = 64) -> Tensor:
    """[N, N]: ``steps`` from each landmark of nodes [N, D] to each other."""
    n = nodes.shape[0]
    rows = [steps(nodes[i:i + chunk, None].expand(-1, n, -1), nodes[None].expand(min(chunk, n - i), n, -1))
            for i in range(0, n, chunk)]
    return torch.cat(rows).float()


def experience_weights(nodes: Tensor, latents: Tensor, episodes: Tensor, steps: StepsFn, max_edge: float,
                       radius: float, reversible: bool = False, chunk: int = 4096,
                       blocked: Tensor | None = None, key: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """Edge weights [N, N] between landmarks nodes [N, D] from the agent's episodes (inf: no edge).

    latents [M, D] are visited latents in time order within each episode; episodes [M] the episode
    of each (equal ids for consecutive latents of one episode). Each latent belongs to its nearest
    landmark (L2) when ``steps`` rates them at most ``radius`` apart both ways, else to none. Landmark
    i is joined to j with weight d when a latent of i is followed d <= ``max_edge`` steps later, in
    the same episode, by one of j (the smallest such d). ``reversible``: also join j to i (for
    systems whose motions can be undone, as a ball in a maze; not a door that only opens one way).
    ``blocked`` [M] (bool): visited latents a guardrail rules out. No edge spans one of them, so the
    graph does not route through a hazard the agent once crossed (the edge's two ends may be safe).
    ``key``: what "nearest" is measured in (e.g. ``slow_features``; default the latent itself).
    """
    if latents.dim() != 2 or episodes.shape != latents.shape[:1]:
        raise ValueError(f"experience edges need latents [M, D] and episodes [M], got {tuple(latents.shape)} "
                         f"and {tuple(episodes.shape)}")
    if blocked is not None and blocked.shape != latents.shape[:1]:
        raise ValueError(f"blocked must be [M] = [{latents.shape[0]}], got {tuple(blocked.shape)}")
    n = nodes.shape[0]
    key = key or (lambda z: z)
    node_keys = key(nodes)
    labels = [label_visits(part, nodes, steps, radius, node_keys, key) for part in latents.split(chunk)]
    label = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long, device=nodes.device)
    episodes = episodes.to(label.device)
    m = label.shape[0]
    # before[t]: blocked latents among the first t; the span t..t+d holds before[t+d+1] - before[t]
    before = torch.zeros(m + 1, dtype=torch.long, device=label.device)
    if blocked is not None:
        before[1:] = torch.cumsum(blocked.to(label.device).long(), 0)
    weights = torch.full((n * n,), math.inf, device=nodes.device)
    for d in range(1, min(int(max_edge), m - 1) + 1):
        a, b = label[:-d], label[d:]
        clear = before[d + 1:] == before[:m - d]
        seen = (episodes[:-d] == episodes[d:]) & (a >= 0) & (b >= 0) & (a != b) & clear
        weights.scatter_reduce_(0, a[seen] * n + b[seen], torch.full((int(seen.sum()),), float(d),
                                                                     device=nodes.device), "amin")
    weights = weights.view(n, n)
    return torch.minimum(weights, weights.T) if reversible else weights


class LandmarkGraph:
    """Landmarks [N, D] joined where ``steps`` rates them <= ``max_edge`` apart (or by the given edge
    ``weights`` [N, N], inf = no edge, e.g. ``experience_weights``); routes between latents."""

    def __init__(self, nodes: Tensor, steps: StepsFn, max_edge: float, chunk: int = 64,
                 weights: Tensor | None = None, trusted: float | None = None,
                 key: Callable[[Tensor], Tensor] | None = None):
        if nodes.dim() != 2 or nodes.shape[0] < 1:
            raise ValueError(f"landmarks must be [N, D] with N >= 1, got {tuple(nodes.shape)}")
        if not max_edge > 0:
            raise ValueError(f"max_edge must be > 0, got {max_edge}")
        self.nodes, self.steps, self.max_edge = nodes, steps, float(max_edge)
        # with experience edges: the range within which `steps` is trusted at the route's two ends
        self.trusted = None if trusted is None else float(trusted)
        # with a key (e.g. slow_features): a latent joins the graph at its nearest landmark in the key,
        # as visited latents are labelled for experience edges; None: wherever `steps` rates it near
        self.key = key
        self._node_keys = None if key is None else key(nodes)
        n = nodes.shape[0]
        if weights is not None:
            if weights.shape != (n, n):
                raise ValueError(f"edge weights must be [{n}, {n}] for {n} landmarks, got {tuple(weights.shape)}")
            self.weights = weights.float()
        else:
            pairwise = pairwise_steps(nodes, steps, chunk)
            self.weights = torch.where(pairwise <= self.max_edge, pairwise, torch.full_like(pairwise, math.inf))
        self.dist, self.hop = shortest_paths(self.weights)
        self.avoid: Tensor | None = None  # [N] bool: landmarks no route uses (see `without`)

    def without(self, avoid: Tensor) -> LandmarkGraph:
        """The same landmarks with those marked in ``avoid`` [N] (bool) out of every route: no edge
        to or from them, and no route starts or ends there."""
        blocked = avoid[:, None] | avoid[None, :]
        weights = torch.where(blocked, torch.full_like(self.weights, math.inf), self.weights)
        graph = LandmarkGraph(self.nodes, self.steps, self.max_edge, weights=weights, trusted=self.trusted,
                              key=self.key)
        graph.avoid = avoid
        return graph

    def __len__(self) -> int:
        return self.nodes.shape[0]

    def path(self, i: int, j: int) -> list[int]:
        """Landmark indices from i to j along the shortest path ([] when j cannot be reached)."""
        if int(self.hop[i, j]) < 0:
            return []
        out = [i]
        while i != j:
            i = int(self.hop[i, j])
            out.append(i)
        return out

    @torch.no_grad()
    def route(self, z: Tensor, z_goal: Tensor, at: int | None = None) -> tuple[list[int], float]:
        """The landmarks to visit from latent z [D] to z_goal [D] and the route's predicted steps.

        An empty list means "head for the goal directly": the goal is within ``max_edge`` of z and
        no route through landmarks is shorter, or no route exists (then the steps are the direct
        estimate, however long; ``toward`` gives the way as far as the graph goes). With ``trusted``
        (experience edges), the learned steps are believed only that far: both ends join the
        landmarks within ``trusted`` (within ``max_edge`` when none is), and the agent heads straight
        for the goal only when it is that near or no route exists. ``at``: the landmark z is taken to be at
        (-1: none) instead of ``locate(z)``.
        """
        n = len(self)
        start, end = self.locate(z) if at is None else at, self.locate(z_goal)
        to_nodes = self._joins(start, self.steps(z.expand(n, -1), self.nodes))
        from_nodes = self._joins(end, self.steps(self.nodes, z_goal.expand(n, -1)))
        direct = float(self.steps(z[None], z_goal[None])[0])
        total = to_nodes[:, None] + self.dist + from_nodes[None, :]
        best = int(total.argmin())
        via = float(total.flatten()[best])
        near = direct <= self.trusted if self.trusted is not None else direct <= self.max_edge and direct <= via
        if start >= 0 and end >= 0:  # both ends located: straight to the goal only from its own landmark
            near = start == end
        if not math.isfinite(via) or near:
            return [], direct
        return self.path(best // n, best % n), via

    @torch.no_grad()
    def toward(self, z: Tensor, z_goal: Tensor) -> tuple[list[int], float]:
        """Where no route joins z [D] to z_goal [D]: the way from z to the landmark it can reach that the
        cost-to-go puts nearest the goal, and that route's steps plus the estimate from there. ([], inf)
        when a route exists (``route`` has the way) or z joins no landmark. The graph knows the way no
        further; from there the agent heads for the goal itself (parts of a maze that no episode went
        between may still have a door between them)."""
        n = len(self)
        to_nodes = self._joins(self.locate(z), self.steps(z.expand(n, -1), self.nodes))
        via = to_nodes[:, None] + self.dist  # [i, j]: from z into the graph at i, then on to j
        left = self.steps(self.nodes, z_goal.expand(n, -1)).float()  # from each landmark to the goal
        if bool(torch.isfinite(via + self._joins(self.locate(z_goal), left)[None, :]).any()):
            return [], math.inf
        first, steps = via.argmin(0), via.min(0).values
        if self.avoid is not None:
            left = torch.where(self.avoid, torch.full_like(left, math.inf), left)
        score = torch.where(torch.isfinite(steps), left, torch.full_like(left, math.inf))
        j = int(score.argmin())
        if not math.isfinite(float(score[j])):
            return [], math.inf
        return self.path(int(first[j]), j), float(steps[j] + left[j])

    def _joins(self, at: int, steps: Tensor) -> Tensor:
        """Learned steps between a latent and every landmark -> the edges [N] joining it to the graph
        (inf: none); ``at``: the landmark it is located at (-1: none)."""
        out = self._at(at, steps.float())
        if self.avoid is not None:  # a route neither enters nor leaves the graph at an avoided landmark
            out = torch.where(self.avoid, torch.full_like(out, math.inf), out)
        return self._ends(out)

    @torch.no_grad()
    def reachable(self, z: Tensor) -> Tensor:
        """Which landmarks [N] (bool) a route from latent z [D] can reach: those joined to the landmarks
        z is near (as ``route`` joins z to the graph) by a chain of edges. All of them when z is near
        none: then nothing is known to be out of reach."""
        steps = self._at(self.locate(z), self.steps(z.expand(len(self), -1), self.nodes).float())
        near = torch.isfinite(self._ends(steps))
        if not bool(near.any()):
            return torch.ones_like(near)
        return near | torch.isfinite(self.dist[near]).any(0)

    @torch.no_grad()
    def locate(self, z: Tensor) -> int:
        """The landmark latent z [D] is at: its nearest in the ``key``, when ``steps`` rates them within
        ``trusted`` of each other both ways (how visited latents are labelled for experience edges).
        -1 without a key or when z is near no landmark.

        Why not every landmark ``steps`` rates near: a learned cost-to-go is smooth in the latent, and
        across a wall it rated landmarks a few steps away that are many steps away (traces on the giant
        maze, BENCHMARKS.md); the nearest place is on the agent's side of the wall."""
        if self.key is None or self.trusted is None:
            return -1
        return int(label_visits(z[None], self.nodes, self.steps, self.trusted, self._node_keys, self.key)[0])

    @staticmethod
    def _at(i: int, steps: Tensor) -> Tensor:
        """Learned steps between a latent and every landmark, kept only at landmark i, where the latent
        is (``locate``; all of them when i is -1)."""
        if i < 0:
            return steps
        out = torch.full_like(steps, math.inf)
        out[i] = 0.0
        return out

    def _ends(self, steps: Tensor) -> Tensor:
        """Learned steps between a latent and every landmark -> the edges joining it to the graph."""
        reach = self.max_edge
        if self.trusted is not None and bool((steps <= self.trusted).any()):
            reach = self.trusted
        return torch.where(steps <= reach, steps, torch.full_like(steps, math.inf))
