"""Maze layouts for PointMaze: a boolean wall grid plus optional hazard cells (pure numpy).

A layout comes from a string (``#`` wall, ``.`` free, ``x`` hazard: free space that is a
safety hazard, ``S``/``G`` a fixed start/goal cell) or is generated from a seed: a grid of
R x C square "rooms" of free cells separated by one-cell walls, joined through one-cell
doorways chosen by a randomized spanning tree (randomized DFS) plus a few extra doors that
make loops. Cell ``(row, col)`` has row 0 at the top (+y) and the maze is centred at the origin,
so a printed layout reads like the top-down camera frame.
"""

from __future__ import annotations

import dataclasses
import re
from collections import deque

import numpy as np

Cell = tuple[int, int]
_NEIGHBOURS = ((1, 0), (-1, 0), (0, 1), (0, -1))
_CHARS = {"#", ".", "x", "S", "G"}
#: name -> (room rows, room cols, room size in cells, default seed, probability of an extra loop door)
PRESETS: dict[str, tuple[int, int, int, int, float]] = {
    "open": (1, 1, 5, 0, 0.0),
    "2x2": (2, 2, 3, 0, 0.15),
    "3x3": (3, 3, 3, 0, 0.15),
    "4x4": (4, 4, 3, 0, 0.15),
    # OGBench's pointmaze-giant is a 12 x 16 grid of one-cell corridors with a few loops; this is
    # a 13 x 17 corridor maze (6 x 8 one-cell rooms) of the same extent and path lengths.
    "giant": (6, 8, 1, 8, 0.2),
}
_RXC = re.compile(r"^(\d+)x(\d+)$")
_EXACT_DIAMETER_MAX_CELLS = 400


@dataclasses.dataclass(frozen=True, eq=False)
class MazeLayout:
    """An immutable maze: ``walls[r, c]`` is True for a wall cell, ``hazards[r, c]`` for a hazard.

    Construction validates the layout: closed border, at least one free cell, all free cells
    connected, start/goal (if given) on free non-hazard cells.
    """

    walls: np.ndarray
    hazards: np.ndarray | None = None
    start: Cell | None = None
    goal: Cell | None = None

    def __post_init__(self) -> None:
        walls = np.array(self.walls, dtype=bool)
        if walls.ndim != 2 or min(walls.shape) < 3:
            raise ValueError(f"maze layout must be a 2-D grid of at least 3 x 3 cells, got shape {walls.shape}")
        hazards = np.zeros_like(walls) if self.hazards is None else np.array(self.hazards, dtype=bool)
        if hazards.shape != walls.shape:
            raise ValueError(f"hazard grid shape {hazards.shape} differs from wall grid shape {walls.shape}")
        if np.any(hazards & walls):
            raise ValueError("a hazard cell is also a wall")
        walls.flags.writeable = False
        hazards.flags.writeable = False
        object.__setattr__(self, "walls", walls)
        object.__setattr__(self, "hazards", hazards)
        border = np.ones_like(walls)
        border[1:-1, 1:-1] = False
        open_border = np.argwhere(border & ~walls)
        if len(open_border):
            raise ValueError(f"border is not closed by walls: cell {tuple(int(v) for v in open_border[0])} is free")
        free = self.free_cells()
        if not free:
            raise ValueError("maze layout has no free cell")
        dist = self.distances_from(free[0])
        unreachable = [cell for cell in free if dist[cell] < 0]
        if unreachable:
            raise ValueError(f"free cells are not connected: {unreachable[0]} is unreachable from {free[0]}")
        for name in ("start", "goal"):
            cell = getattr(self, name)
            if cell is None:
                continue
            cell = (int(cell[0]), int(cell[1]))
            object.__setattr__(self, name, cell)
            if not self.is_free(cell) or self.hazards[cell]:
                raise ValueError(f"{name} cell {cell} is not a free, non-hazard cell")

    # ----- construction -----------------------------------------------------------------
    @classmethod
    def from_string(cls, text: str) -> MazeLayout:
        """Parse rows of ``#``/``.``/``x``/``S``/``G``; surrounding blank lines and indentation are ignored."""
        rows = [line.strip() for line in text.strip().splitlines()]
        if not rows or not rows[0]:
            raise ValueError("maze layout string is empty")
        width = len(rows[0])
        for r, row in enumerate(rows):
            if len(row) != width:
                raise ValueError(f"maze layout rows are ragged: row {r} has {len(row)} cells, row 0 has {width}")
            for c, ch in enumerate(row):
                if ch not in _CHARS:
                    raise ValueError(f"unknown character {ch!r} at row {r}, column {c} of the maze layout "
                                     f"(expected one of '#', '.', 'x', 'S', 'G')")
        grid = np.array([list(row) for row in rows])
        marks: dict[str, Cell | None] = {}
        for ch, name in (("S", "start"), ("G", "goal")):
            found = [(int(r), int(c)) for r, c in np.argwhere(grid == ch)]
            if len(found) > 1:
                raise ValueError(f"more than one {name} {ch!r} in the maze layout: at {found}")
            marks[name] = found[0] if found else None
        return cls(grid == "#", grid == "x", marks["start"], marks["goal"])

    def to_string(self) -> str:
        grid = np.where(self.walls, "#", np.where(self.hazards, "x", "."))
        if self.start is not None:
            grid[self.start] = "S"
        if self.goal is not None:
            grid[self.goal] = "G"
        return "\n".join("".join(row) for row in grid)

    def with_random_hazards(self, n: int, rng: np.random.Generator) -> MazeLayout:
        """A copy with ``n`` more hazard cells, placed so the safe cells stay connected.

        A safe path between any two safe cells therefore always exists; start/goal cells are spared.
        """
        if n < 0:
            raise ValueError(f"number of hazards must be >= 0, got {n}")
        hazards = self.hazards.copy()
        reserved = {self.start, self.goal}
        candidates = [c for c in self.safe_cells() if c not in reserved]
        placed = 0
        for i in rng.permutation(len(candidates)):
            if placed == n:
                break
            cell = candidates[int(i)]
            hazards[cell] = True
            if _connected(~self.walls & ~hazards):
                placed += 1
            else:
                hazards[cell] = False
        if placed < n:
            raise ValueError(f"cannot place {n} hazards without cutting the maze; at most {placed} fit")
        return MazeLayout(self.walls, hazards, self.start, self.goal)

    # ----- queries ----------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return self.walls.shape  # type: ignore[return-value]

    def is_free(self, cell: Cell) -> bool:
        r, c = cell
        return 0 <= r < self.shape[0] and 0 <= c < self.shape[1] and not self.walls[r, c]

    def free_cells(self) -> list[Cell]:
        """Every non-wall cell (hazards included), in row-major order."""
        return [(int(r), int(c)) for r, c in np.argwhere(~self.walls)]

    def safe_cells(self) -> list[Cell]:
        """Free cells that are not hazards (where starts and goals are sampled)."""
        return [(int(r), int(c)) for r, c in np.argwhere(~self.walls & ~self.hazards)]

    def cell_to_xy(self, cell: Cell, cell_size: float = 1.0) -> np.ndarray:
        """World xy (metres) of a cell's centre; the maze is centred at the origin, row 0 at +y."""
        h, w = self.shape
        return np.array([(cell[1] - (w - 1) / 2.0) * cell_size, ((h - 1) / 2.0 - cell[0]) * cell_size])

    def xy_to_cell(self, xy: np.ndarray, cell_size: float = 1.0) -> Cell:
        """The cell containing world point ``xy`` (may lie outside the grid for far points)."""
        h, w = self.shape
        return int(np.floor(h / 2.0 - xy[1] / cell_size)), int(np.floor(xy[0] / cell_size + w / 2.0))

    def distances_from(self, cell: Cell) -> np.ndarray:
        """BFS steps (4-connected, hazards passable) from ``cell`` to every cell; -1 if unreachable."""
        return _bfs(~self.walls, cell)

    def shortest_path_length(self, a: Cell, b: Cell) -> int:
        """Number of cell-to-cell moves on a shortest path from ``a`` to ``b``; -1 if none."""
        if not (self.is_free(a) and self.is_free(b)):
            raise ValueError(f"cells {a} and {b} must both be free")
        return int(self.distances_from(a)[b])

    def is_connected(self) -> bool:
        return _connected(~self.walls)

    def longest_shortest_path(self) -> int:
        """The maze's diameter in cell moves: exact up to 400 free cells, else a (tight) double-sweep bound."""
        free = self.free_cells()
        if len(free) <= _EXACT_DIAMETER_MAX_CELLS:
            return max(int(self.distances_from(cell).max()) for cell in free)
        best, source = 0, free[0]
        for _ in range(4):  # repeated BFS from the farthest cell found so far
            dist = self.distances_from(source)
            far = np.unravel_index(int(np.argmax(dist)), dist.shape)
            if dist[far] <= best:
                break
            best, source = int(dist[far]), (int(far[0]), int(far[1]))
        return best

    def wall_boxes(self) -> list[tuple[int, int, int, int]]:
        """Wall cells merged into few rectangles ``(row0, col0, row1, col1)``, inclusive bounds.

        Greedy: take horizontal runs, then extend each run downwards while the rows below hold the
        same run. Fewer geoms make the physics and rendering cheaper.
        """
        todo = self.walls.copy()
        h, w = todo.shape
        boxes = []
        for r in range(h):
            c = 0
            while c < w:
                if not todo[r, c]:
                    c += 1
                    continue
                c1 = c
                while c1 + 1 < w and todo[r, c1 + 1]:
                    c1 += 1
                r1 = r
                while r1 + 1 < h and todo[r1 + 1, c:c1 + 1].all():
                    r1 += 1
                todo[r:r1 + 1, c:c1 + 1] = False
                boxes.append((r, c, r1, c1))
                c = c1 + 1
        return boxes


def _bfs(passable: np.ndarray, start: Cell) -> np.ndarray:
    dist = np.full(passable.shape, -1, dtype=np.int64)
    if not passable[start]:
        return dist
    h, w = passable.shape
    dist[start] = 0
    queue = deque([start])
    while queue:
        r, c = queue.popleft()
        d = dist[r, c] + 1
        for dr, dc in _NEIGHBOURS:
            nr, nc = r + dr, c + dc
            if 0 <= nr < h and 0 <= nc < w and passable[nr, nc] and dist[nr, nc] < 0:
                dist[nr, nc] = d
                queue.append((nr, nc))
    return dist


def _connected(passable: np.ndarray) -> bool:
    cells = np.argwhere(passable)
    if len(cells) == 0:
        return False
    return bool(np.all(_bfs(passable, (int(cells[0][0]), int(cells[0][1])))[passable] >= 0))


def generate_rooms(rows: int, cols: int, room_size: int = 3, seed: int = 0, loop_prob: float = 0.1) -> MazeLayout:
    """A ``rows x cols`` grid of ``room_size``-wide square rooms joined by one-cell doorways.

    Doors follow a spanning tree of the rooms from a randomized DFS (so every room is reachable);
    each remaining wall between neighbouring rooms gets a door with probability ``loop_prob``.
    ``room_size=1`` gives a classic corridor maze. The grid is ``rows*(room_size+1)+1`` cells high.
    """
    for name, value in (("rows", rows), ("cols", cols), ("room_size", room_size)):
        if not isinstance(value, (int, np.integer)) or not 1 <= value <= 100:
            raise ValueError(f"{name} must be an int in [1, 100], got {value!r}")
    if not 0.0 <= loop_prob <= 1.0:
        raise ValueError(f"loop_prob must be in [0, 1], got {loop_prob!r}")
    rng = np.random.default_rng(seed)
    k = room_size + 1
    walls = np.ones((rows * k + 1, cols * k + 1), dtype=bool)
    for i in range(rows):
        for j in range(cols):
            walls[i * k + 1:i * k + k, j * k + 1:j * k + k] = False

    def open_door(a: Cell, b: Cell) -> None:
        offset = 1 + int(rng.integers(room_size))
        if a[0] == b[0]:  # horizontal neighbours: door in the vertical wall between them
            walls[a[0] * k + offset, max(a[1], b[1]) * k] = False
        else:
            walls[max(a[0], b[0]) * k, a[1] * k + offset] = False

    visited = {(0, 0)}
    stack: list[Cell] = [(0, 0)]
    tree: set[frozenset[Cell]] = set()
    while stack:
        i, j = stack[-1]
        options = [(i + di, j + dj) for di, dj in _NEIGHBOURS
                   if 0 <= i + di < rows and 0 <= j + dj < cols and (i + di, j + dj) not in visited]
        if not options:
            stack.pop()
            continue
        nxt = options[int(rng.integers(len(options)))]
        open_door((i, j), nxt)
        tree.add(frozenset(((i, j), nxt)))
        visited.add(nxt)
        stack.append(nxt)
    for i in range(rows):
        for j in range(cols):
            for nxt in ((i + 1, j), (i, j + 1)):
                if nxt[0] < rows and nxt[1] < cols and frozenset(((i, j), nxt)) not in tree \
                        and rng.random() < loop_prob:
                    open_door((i, j), nxt)
    return MazeLayout(walls)


def make_layout(spec: str | MazeLayout, seed: int | None = None) -> MazeLayout:
    """A layout from a preset name (``open``, ``2x2``, ``3x3``, ``4x4``, ``giant``), an ``"RxC"``
    room grid, a layout string (anything containing ``#``) or a `MazeLayout` (returned as is).

    Presets and ``RxC`` grids use a fixed seed unless ``seed`` is given; layout strings ignore it.
    """
    if isinstance(spec, MazeLayout):
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"layout must be a preset name, 'RxC' or a layout string, got {type(spec).__name__}")
    if "#" in spec:
        return MazeLayout.from_string(spec)
    name = spec.strip().lower()
    if name in PRESETS:
        rows, cols, size, default_seed, loop_prob = PRESETS[name]
        return generate_rooms(rows, cols, size, default_seed if seed is None else seed, loop_prob)
    match = _RXC.match(name)
    if match:
        rows, cols = int(match.group(1)), int(match.group(2))
        if not (1 <= rows <= 30 and 1 <= cols <= 30):
            raise ValueError(f"layout {spec!r}: room grid must be between 1x1 and 30x30")
        return generate_rooms(rows, cols, 3, 0 if seed is None else seed, PRESETS["2x2"][4])
    raise ValueError(f"unknown layout {spec!r}: expected one of {sorted(PRESETS)}, 'RxC' (e.g. '5x3') "
                     f"or a layout string of '#', '.', 'x', 'S', 'G'")
