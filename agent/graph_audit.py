"""Audit a PointMaze agent's landmark graph against the maze (a benchmark, not used by the agent).

    python -m agent.graph_audit CHECKPOINT [key=value ...] [--pairs 400] [--seed 0]

The graph is built as ``oda eval`` builds it (same overrides, e.g. ``hierarchy={..., edges:
experience}``). Each landmark's true position is read from the replay's ``agent_xy``. An edge is
a *wormhole* when the maze's shortest path between the two landmarks' cells is more than
``SLACK`` cells longer than the straight line between them: the edge claims a short trip that
only a way through a wall would allow. Then the shortest routes between random landmark pairs
are checked: how many use a wormhole, how many pairs the graph cannot join. Prints one JSON object.

With ``--eval FILE`` (the output of ``oda eval --json --per-episode`` for the same checkpoint), the
evaluation episodes are sorted by whether their start and goal cells were ever visited in the replay,
with the successes of each kind: how many failures a graph read from experience could not have routed.

Where the graph falls apart, it says whether the experience did too: ``graph_parts`` are the
landmark sets joined by routes, ``cell_groups`` the visited cells joined by the agent's episodes
(one step from one cell into the next joins them). A graph read from experience cannot join what
no episode joined: in 4x4 rooms the cell groups were groups of rooms some episode went between.
"""

from __future__ import annotations

import argparse
import json

import gymnasium as gym
import numpy as np
import torch

from agent.build import landmarks_from_replay, make_actor, make_env
from agent.launch import eval_overrides
from agent.snapshot import load_agent, load_replay

SLACK = 2.5  # cells: a path around a wall corner is longer than the straight line, but not by this much


def _parts(joined: np.ndarray) -> np.ndarray:
    """Labels [N] of the parts of a graph given which nodes reach which ([N, N] bool, symmetric)."""
    return joined.argmax(1)  # the first node each one reaches names its part


def cell_groups(cells: np.ndarray, lengths: list[int]) -> dict[tuple[int, int], int]:
    """The visited cells [M, 2] (episodes one after the other, ``lengths`` steps each) -> a group label
    per cell: cells that consecutive steps of an episode went between share a group."""
    parent: dict[tuple[int, int], tuple[int, int]] = {}

    def find(c: tuple[int, int]) -> tuple[int, int]:
        while parent.setdefault(c, c) != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    start = 0
    for n in lengths:
        run = [tuple(int(v) for v in c) for c in cells[start:start + n]]
        for a, b in zip(run[:-1], run[1:], strict=True):
            parent[find(a)] = find(b)
        find(run[0])
        start += n
    roots = {c: find(c) for c in list(parent)}
    names = {r: i for i, r in enumerate(sorted(set(roots.values())))}
    return {c: names[r] for c, r in roots.items()}


def episode_coverage(env: gym.Env, visited: set[tuple[int, int]], per_episode: list[dict]) -> dict[str, dict[str, int]]:
    """Evaluation episodes (``oda eval --per-episode`` records: their ``seed`` and ``success``) by whether
    the replay ever visited their start and goal cells -> {kind: {"episodes": n, "success": k}}."""
    task = env.unwrapped.task
    out: dict[str, dict[str, int]] = {}
    for record in per_episode:
        _, info = env.reset(seed=int(record["seed"]))
        start, goal = (task.layout.xy_to_cell(info["measurements"][k], task.cell_size) for k in ("agent_xy", "goal_xy"))
        kind = {(True, True): "both_visited", (False, True): "start_unvisited", (True, False): "goal_unvisited",
                (False, False): "neither_visited"}[(start in visited, goal in visited)]
        tally = out.setdefault(kind, {"episodes": 0, "success": 0})
        tally["episodes"] += 1
        tally["success"] += bool(record["success"])
    return out


def audit(checkpoint: str, overrides: list[str], pairs: int = 400, seed: int = 0,
          episodes: list[dict] | None = None) -> dict:
    cfg, model = load_agent(checkpoint, torch.device("cpu"))
    cfg = eval_overrides(cfg, overrides)
    env = make_env(cfg)
    task = env.unwrapped.task
    if not hasattr(task, "layout"):
        raise ValueError(f"{cfg.env.id} has no maze layout to audit the graph against")
    actor = make_actor(cfg, model, env.action_space.shape[0], torch.device("cpu"), env=env)
    replay = load_replay(checkpoint)
    if not landmarks_from_replay(actor, replay, seed, limit=None):
        raise ValueError("the launch config has no hierarchy: give one, e.g. 'hierarchy={landmarks: 256}'")
    graph = actor.planner.graph
    with torch.no_grad():  # each landmark is a replay latent: its nearest one gives the true position
        observations = torch.as_tensor(replay.observations(), dtype=torch.float32)
        latents = torch.cat([model.encode(chunk) for chunk in observations.split(4096)])
        index = torch.cdist(graph.nodes, latents).argmin(1).numpy()
    xy = replay.state_dict()["meas/agent_xy"][index]
    cells = [task.layout.xy_to_cell(p, task.cell_size) for p in xy]
    tables = {c: task.layout.distances_from(c) for c in set(cells)}
    geodesic = np.array([[tables[a][b] for b in cells] for a in cells], dtype=float)
    straight = np.linalg.norm(xy[:, None] - xy[None], axis=-1) / task.cell_size
    n = len(cells)
    edges = np.isfinite(graph.weights.numpy()) & ~np.eye(n, dtype=bool)
    wormholes = edges & (geodesic > straight + SLACK)
    rng = np.random.default_rng(seed)
    through = joined = 0
    for _ in range(pairs):
        i, j = (int(k) for k in rng.choice(n, size=2, replace=False))
        path = graph.path(i, j)
        if path:
            joined += 1
            through += any(wormholes[a, b] for a, b in zip(path[:-1], path[1:], strict=False))
    routed = np.isfinite(graph.dist.numpy())
    parts = _parts(routed & routed.T | np.eye(n, dtype=bool))
    largest = np.bincount(parts).argmax()
    state = replay.state_dict()
    visited = np.array([task.layout.xy_to_cell(p, task.cell_size) for p in state["meas/agent_xy"]])
    groups = cell_groups(visited, [int(k) for k in state["episode_lengths"]])
    group_sizes = np.bincount(list(groups.values()))
    coverage = {} if episodes is None else {"episodes_by_coverage": episode_coverage(env, set(groups), episodes)}
    return {"checkpoint": str(checkpoint), "edges_kind": actor.planner.config.edges, "landmarks": n,
            "edges": int(edges.sum()), "wormholes": int(wormholes.sum()),
            "wormhole_share": round(float(wormholes.sum() / max(edges.sum(), 1)), 4),
            "pairs": pairs, "pairs_joined": joined, "routes_through_a_wormhole": int(through),
            "landmark_cells": len(set(cells)), "free_cells": len(task.layout.free_cells()),
            "graph_parts": int(len(set(parts.tolist()))), "largest_part_landmarks": int((parts == largest).sum()),
            "largest_part_cells": len({c for c, p in zip(cells, parts, strict=True) if p == largest}),
            "visited_cells": len(groups), "cell_groups": len(group_sizes),
            "largest_cell_group": int(group_sizes.max()),
            "unvisited_cells": [list(c) for c in task.layout.free_cells() if c not in groups], **coverage}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agent.graph_audit", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("overrides", nargs="*", help="key=value, as for oda eval (e.g. a hierarchy)")
    p.add_argument("--pairs", type=int, default=400, help="random landmark pairs whose routes are checked")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval", metavar="FILE", help="oda eval --json --per-episode output for this checkpoint: "
                   "its episodes sorted by whether their start and goal cells were visited")
    args = p.parse_args(argv)
    episodes = None
    if args.eval:
        with open(args.eval) as f:
            record = json.load(f)
        if "per_episode" not in record:
            raise SystemExit(f"{args.eval}: no 'per_episode' list (run oda eval with --json --per-episode)")
        episodes = record["per_episode"]
    print(json.dumps(audit(args.checkpoint, args.overrides, args.pairs, args.seed, episodes)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
