"""A graph of landmark latents for the high level of hierarchical planning (issue 6).

Landmarks are latent states the agent has visited: a farthest-point sample of encoded replay
observations, so they spread over everything the agent has seen (in a maze: every room and
corridor it explored). Two landmarks are joined when a learned cost-to-go (e.g.
``JEPAWorldModel.cost_to_go``) rates them at most ``max_edge`` steps apart: the learned distance
is trusted only at short range, where it is accurate, and long distances come from chaining short
edges. All-pairs shortest paths (Floyd-Warshall, with next hops) are computed once per graph; a
query from the current latent to a goal latent is then one batched cost-to-go call to connect
both ends and an argmin.

Nothing here reads privileged state: nodes are latents, edges come from a learned function.
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


class LandmarkGraph:
    """Landmarks [N, D] joined where ``steps`` rates them <= ``max_edge`` apart; routes between latents."""

    def __init__(self, nodes: Tensor, steps: StepsFn, max_edge: float, chunk: int = 64):
        if nodes.dim() != 2 or nodes.shape[0] < 1:
            raise ValueError(f"landmarks must be [N, D] with N >= 1, got {tuple(nodes.shape)}")
        if not max_edge > 0:
            raise ValueError(f"max_edge must be > 0, got {max_edge}")
        self.nodes, self.steps, self.max_edge = nodes, steps, float(max_edge)
        n = nodes.shape[0]
        with torch.no_grad():
            rows = [steps(nodes[i:i + chunk, None].expand(-1, n, -1), nodes[None].expand(min(chunk, n - i), n, -1))
                    for i in range(0, n, chunk)]
        pairwise = torch.cat(rows).float()
        self.weights = torch.where(pairwise <= self.max_edge, pairwise, torch.full_like(pairwise, math.inf))
        self.dist, self.hop = shortest_paths(self.weights)

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
    def route(self, z: Tensor, z_goal: Tensor) -> tuple[list[int], float]:
        """The landmarks to visit from latent z [D] to z_goal [D] and the route's predicted steps.

        An empty list means "head for the goal directly": the goal is within ``max_edge`` of z and
        no route through landmarks is shorter, or no route exists (then the steps are the direct
        estimate, however long).
        """
        n = len(self)
        to_nodes = self.steps(z.expand(n, -1), self.nodes).float()
        from_nodes = self.steps(self.nodes, z_goal.expand(n, -1)).float()
        direct = float(self.steps(z[None], z_goal[None])[0])
        inf = torch.full_like(to_nodes, math.inf)
        to_nodes = torch.where(to_nodes <= self.max_edge, to_nodes, inf)
        from_nodes = torch.where(from_nodes <= self.max_edge, from_nodes, inf)
        total = to_nodes[:, None] + self.dist + from_nodes[None, :]
        best = int(total.argmin())
        via = float(total.flatten()[best])
        if not math.isfinite(via) or (direct <= self.max_edge and direct <= via):
            return [], direct
        return self.path(best // n, best % n), via
