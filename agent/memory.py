"""Memory: the experience replay the world model learns from, and the actor's short-term memory.

``EpisodeReplay`` stores whole episodes in preallocated numpy ring storage. Observations keep their
own dtype (float32 state vectors, uint8 pixels), so 100k 64x64x3 pixel steps take ~1.2 GB. An episode
of ``T`` actions occupies ``T + 1`` slots (one per observation; the action stored in a slot is the one
taken *from* that observation, the last slot's action is unused padding). ``capacity`` counts slots.
When a new episode does not fit, whole oldest episodes are evicted (FIFO), never parts of them, so
every stored window is a real, contiguous piece of one episode.

Each slot also keeps the reward of its action and whether that action ended the episode by
termination (a terminal state: no bootstrapping past it), as opposed to a time-limit truncation
(bootstrapping continues). Goal tasks store zeros there; reward tasks (issue 4) learn from them.
"""

from __future__ import annotations

from collections import deque
from typing import Any, NamedTuple

import numpy as np

_META_KEYS = ("episode_starts", "episode_lengths", "capacity", "counters")
_STEP_KEYS = ("rewards", "terminals")  # optional in saved states: checkpoints from before they existed


def _as_numpy(value: Any) -> np.ndarray:
    """Accept numpy arrays or (CPU/GPU) torch tensors, e.g. what ``safetensors.torch.load_file`` returns."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


class EpisodeReplay:
    """Episode-structured replay buffer with boundary-respecting window sampling."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], obs_dtype: np.dtype | type | str,
                 action_dim: int, measurement_dims: dict[str, int] | None = None) -> None:
        if int(capacity) < 2:
            raise ValueError(f"capacity must be >= 2 observation slots, got {capacity!r}")
        if int(action_dim) < 1:
            raise ValueError(f"action_dim must be >= 1, got {action_dim!r}")
        self.capacity = int(capacity)
        self.obs_shape = tuple(int(s) for s in obs_shape)
        self.obs_dtype = np.dtype(obs_dtype)
        self.action_dim = int(action_dim)
        self.measurement_dims = {str(k): int(v) for k, v in (measurement_dims or {}).items()}
        for name, k in self.measurement_dims.items():
            if k < 1 or "/" in name:
                raise ValueError(f"measurement {name!r}: need a dimension >= 1 and a name without '/', got {k}")
        self._obs = np.zeros((self.capacity, *self.obs_shape), dtype=self.obs_dtype)
        self._actions = np.zeros((self.capacity, self.action_dim), dtype=np.float32)
        self._rewards = np.zeros(self.capacity, dtype=np.float32)  # reward of the action taken from a slot
        self._terminals = np.zeros(self.capacity, dtype=bool)  # that action reached a terminal state
        self._meas = {n: np.zeros((self.capacity, k), dtype=np.float32) for n, k in self.measurement_dims.items()}
        self._clear_index()

    def _clear_index(self) -> None:
        self._episodes: deque[tuple[int, int]] = deque()  # (first slot, number of slots), oldest first
        self._tail = 0  # first slot of the oldest episode
        self._used = 0  # slots in use
        self.episodes_added = 0  # totals over the buffer's life, evicted episodes included
        self.steps_added = 0

    # ------------------------------------------------------------------ sizes
    @property
    def num_episodes(self) -> int:
        return len(self._episodes)

    @property
    def num_steps(self) -> int:
        """Stored transitions (actions); each episode contributes its ``T``, not ``T + 1``."""
        return self._used - len(self._episodes)

    def __len__(self) -> int:
        return self.num_steps

    def episode_lengths(self) -> list[int]:
        """Number of actions of each stored episode, oldest first."""
        return [n - 1 for _, n in self._episodes]

    # ------------------------------------------------------------------ writing
    def add_episode(self, obs: np.ndarray, actions: np.ndarray,
                    measurements: dict[str, np.ndarray] | None = None, rewards: np.ndarray | None = None,
                    terminated: bool = False) -> None:
        """Append one episode: obs ``[T+1, *obs_shape]``, actions ``[T, A]``, measurements ``{name: [T+1, k]}``,
        rewards ``[T]`` (zeros when None); ``terminated``: the last action reached a terminal state
        (False for a time-limit truncation)."""
        obs = np.asarray(obs)
        actions = np.asarray(actions)
        if actions.ndim != 2 or actions.shape[1] != self.action_dim or actions.shape[0] < 1:
            raise ValueError(f"actions: expected shape [T >= 1, {self.action_dim}], got {list(actions.shape)}")
        steps = actions.shape[0]
        if obs.shape != (steps + 1, *self.obs_shape):
            raise ValueError(f"obs: expected shape {[steps + 1, *self.obs_shape]} (T+1 observations for "
                             f"T={steps} actions), got {list(obs.shape)}")
        if not np.can_cast(obs.dtype, self.obs_dtype, casting="same_kind"):
            raise ValueError(f"obs: dtype {obs.dtype} cannot be stored as {self.obs_dtype}")
        if not np.all(np.isfinite(actions)):
            raise ValueError("actions: contains NaN or inf")
        if obs.dtype.kind == "f" and not np.all(np.isfinite(obs)):
            raise ValueError("obs: contains NaN or inf")
        rewards = np.zeros(steps, np.float32) if rewards is None else np.asarray(rewards, dtype=np.float32)
        if rewards.shape != (steps,) or not np.all(np.isfinite(rewards)):
            raise ValueError(f"rewards: expected {steps} finite values (one per action), "
                             f"got shape {list(rewards.shape)}")
        measurements = measurements or {}
        unknown = sorted(set(measurements) - set(self.measurement_dims))
        missing = sorted(set(self.measurement_dims) - set(measurements))
        if unknown or missing:
            raise ValueError(f"measurements: unknown {unknown}, missing {missing}; "
                             f"this buffer stores {sorted(self.measurement_dims)}")
        meas = {}
        for name, k in self.measurement_dims.items():
            value = np.asarray(measurements[name], dtype=np.float32)
            if value.shape != (steps + 1, k):
                raise ValueError(f"measurements[{name!r}]: expected shape {[steps + 1, k]}, got {list(value.shape)}")
            meas[name] = value
        n = steps + 1
        if n > self.capacity:
            raise ValueError(f"episode of {n} observations does not fit in a buffer of capacity {self.capacity}")
        while self.capacity - self._used < n:
            _, old = self._episodes.popleft()
            self._tail = (self._tail + old) % self.capacity
            self._used -= old
        start = (self._tail + self._used) % self.capacity
        slots = (start + np.arange(n)) % self.capacity
        self._obs[slots] = obs
        self._actions[slots[:-1]] = actions
        self._actions[slots[-1]] = 0.0
        self._rewards[slots[:-1]] = rewards
        self._rewards[slots[-1]] = 0.0
        self._terminals[slots] = False
        self._terminals[slots[-2]] = bool(terminated)
        for name, value in meas.items():
            self._meas[name][slots] = value
        self._episodes.append((start, n))
        self._used += n
        self.episodes_added += 1
        self.steps_added += steps

    def clear(self) -> None:
        self._clear_index()

    # ------------------------------------------------------------------ sampling
    def sample(self, batch_size: int, seq_len: int, rng: np.random.Generator) -> dict[str, Any]:
        """Windows of ``seq_len`` actions and ``seq_len + 1`` observations, uniform over all valid windows.

        A window never crosses an episode boundary; episodes with fewer than ``seq_len`` actions are
        never sampled from. Returns ``{"obs": [B, L+1, ...], "actions": [B, L, A], "rewards": [B, L],
        "terminals": [B, L] bool, "measurements": {name: [B, L+1, k]}}`` with obs in the storage dtype,
        the rest float32.
        """
        if int(batch_size) < 1 or int(seq_len) < 1:
            raise ValueError(f"batch_size and seq_len must be >= 1, got {batch_size!r}, {seq_len!r}")
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy Generator, got {type(rng).__name__}")
        starts = np.array([s for s, _ in self._episodes], dtype=np.int64)
        windows = np.array([max(n - 1 - seq_len + 1, 0) for _, n in self._episodes], dtype=np.int64)
        total = int(windows.sum())
        if total == 0:
            longest = max(self.episode_lengths(), default=0)
            raise ValueError(f"no stored episode has >= seq_len={seq_len} actions "
                             f"({self.num_episodes} episodes, longest {longest})")
        cum = np.cumsum(windows)
        pick = rng.integers(0, total, size=int(batch_size))
        ep = np.searchsorted(cum, pick, side="right")
        offset = pick - (cum[ep] - windows[ep])
        slots = (starts[ep, None] + offset[:, None] + np.arange(seq_len + 1)[None, :]) % self.capacity
        return {
            "obs": self._obs[slots],
            "actions": self._actions[slots[:, :-1]],
            "rewards": self._rewards[slots[:, :-1]],
            "terminals": self._terminals[slots[:, :-1]],
            "measurements": {name: arr[slots] for name, arr in self._meas.items()},
        }

    def sample_goals(self, batch_size: int, rng: np.random.Generator, p_current: float = 0.1,
                     p_future: float = 0.6) -> dict[str, np.ndarray]:
        """Transitions with hindsight goals, for a goal-conditioned value (``world_models.value``).

        For a uniform transition (obs_t, obs_t+1) of a stored episode the goal is, with probability
        ``p_current``, obs_t itself (``reached``: the TD anchor), with ``p_future`` a uniformly drawn
        later observation of the same episode, and otherwise any stored observation. Returns
        ``{"obs", "next_obs", "goal_obs": [B, ...], "reached": [B] bool}``.
        """
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        if self.num_steps == 0:
            raise ValueError("sample_goals: the buffer holds no transition")
        starts = np.array([s for s, _ in self._episodes], dtype=np.int64)
        steps = np.array([n - 1 for _, n in self._episodes], dtype=np.int64)
        cum = np.cumsum(steps)
        pick = rng.integers(0, int(cum[-1]), size=int(batch_size))
        ep = np.searchsorted(cum, pick, side="right")
        t = pick - (cum[ep] - steps[ep])                       # 0 <= t < T of its episode
        kind = rng.random(int(batch_size))
        future = t + 1 + (rng.random(int(batch_size)) * (steps[ep] - t)).astype(np.int64)  # t+1 .. T
        any_ep = rng.integers(0, len(starts), size=int(batch_size))
        any_t = (rng.random(int(batch_size)) * (steps[any_ep] + 1)).astype(np.int64)
        reached = kind < p_current
        goal = np.where(reached, starts[ep] + t,
                        np.where(kind < p_current + p_future, starts[ep] + future, starts[any_ep] + any_t))
        slot = (starts[ep] + t) % self.capacity
        return {"obs": self._obs[slot], "next_obs": self._obs[(slot + 1) % self.capacity],
                "goal_obs": self._obs[goal % self.capacity], "reached": reached}

    def observations(self, limit: int | None = None, seed: int = 0) -> np.ndarray:
        """The stored observations, oldest first (e.g. the landmarks' candidates); with ``limit``, at
        most that many drawn at random (without copying the whole buffer, which matters for frames)."""
        slots = self._ordered_slots()
        if limit is not None and len(slots) > limit:
            slots = np.sort(np.random.default_rng(seed).choice(slots, size=limit, replace=False))
        return self._obs[slots]

    def episode_observations(self, limit: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Whole episodes drawn at random, at most ``limit`` observations in all (at least one episode),
        oldest first: (the observations [M, ...] in time order, the index of each one's episode [M]).
        What experience edges between landmarks are read from (``planners.landmarks``)."""
        episodes, chosen, total = list(self._episodes), [], 0
        for i in np.random.default_rng(seed).permutation(len(episodes)):
            n = episodes[i][1]
            if not chosen or total + n <= limit:
                chosen.append(int(i))
                total += n
        chosen.sort()
        if not chosen:
            return self._obs[:0], np.zeros(0, dtype=np.int64)
        slots = np.concatenate([(episodes[i][0] + np.arange(episodes[i][1])) % self.capacity for i in chosen])
        return self._obs[slots], np.repeat(np.asarray(chosen, dtype=np.int64), [episodes[i][1] for i in chosen])

    # ------------------------------------------------------------------ persistence
    def _ordered_slots(self) -> np.ndarray:
        return (self._tail + np.arange(self._used)) % self.capacity

    def state_dict(self) -> dict[str, np.ndarray]:
        """Flat dict of contiguous numpy arrays (safetensors-ready); stored slots are compacted, oldest first."""
        slots = self._ordered_slots()
        lengths = np.array([n for _, n in self._episodes], dtype=np.int64)
        state = {
            "obs": np.ascontiguousarray(self._obs[slots]),
            "actions": np.ascontiguousarray(self._actions[slots]),
            "rewards": np.ascontiguousarray(self._rewards[slots]),
            "terminals": np.ascontiguousarray(self._terminals[slots]).astype(np.uint8),
            "episode_starts": (np.cumsum(lengths) - lengths).astype(np.int64),
            "episode_lengths": lengths,
            "capacity": np.array([self.capacity], dtype=np.int64),
            "counters": np.array([self.episodes_added, self.steps_added], dtype=np.int64),
        }
        for name, arr in self._meas.items():
            state[f"meas/{name}"] = np.ascontiguousarray(arr[slots])
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` output (numpy arrays or torch tensors); validates everything first."""
        expected = {"obs", "actions", *_META_KEYS} | {f"meas/{n}" for n in self.measurement_dims}
        missing, unknown = sorted(expected - set(state)), sorted(set(state) - expected - set(_STEP_KEYS))
        if missing or unknown:
            raise ValueError(f"replay state: missing keys {missing}, unknown keys {unknown}")
        arrs = {k: _as_numpy(v) for k, v in state.items()}
        capacity = arrs["capacity"].reshape(-1)  # the saving buffer's: this one may be larger (a longer resume)
        if capacity.shape != (1,):
            raise ValueError(f"replay state: capacity must be one value, got {capacity.tolist()}")
        lengths, starts = arrs["episode_lengths"], arrs["episode_starts"]
        if lengths.ndim != 1 or starts.shape != lengths.shape or lengths.dtype.kind not in "iu":
            raise ValueError("replay state: episode_starts/episode_lengths must be 1-d integer arrays of equal length")
        if np.any(lengths < 2) or np.any(starts != np.cumsum(lengths) - lengths):
            raise ValueError("replay state: episode_starts/episode_lengths are inconsistent")
        used = int(lengths.sum())
        if used > self.capacity:
            raise ValueError(f"replay state: {used} slots exceed capacity {self.capacity}")
        checks = {"obs": ((used, *self.obs_shape), self.obs_dtype), "actions": ((used, self.action_dim), np.float32)}
        checks.update({f"meas/{n}": ((used, k), np.float32) for n, k in self.measurement_dims.items()})
        checks.update({k: ((used,), dt) for k, dt in zip(_STEP_KEYS, (np.float32, np.uint8), strict=True) if k in arrs})
        for key, (shape, dtype) in checks.items():
            if arrs[key].shape != shape or arrs[key].dtype != np.dtype(dtype):
                raise ValueError(f"replay state[{key!r}]: expected {np.dtype(dtype)} {list(shape)}, "
                                 f"got {arrs[key].dtype} {list(arrs[key].shape)}")
        counters = arrs["counters"].reshape(-1)
        if counters.shape != (2,):
            raise ValueError(f"replay state['counters']: expected 2 values, got {counters.tolist()}")
        self._clear_index()
        self._obs[:used] = arrs["obs"]
        self._actions[:used] = arrs["actions"]
        self._rewards[:] = 0.0
        self._terminals[:] = False
        if "rewards" in arrs:
            self._rewards[:used] = arrs["rewards"]
        if "terminals" in arrs:
            self._terminals[:used] = arrs["terminals"].astype(bool)
        for name in self.measurement_dims:
            self._meas[name][:used] = arrs[f"meas/{name}"]
        self._episodes.extend((int(s), int(n)) for s, n in zip(starts, lengths, strict=True))
        self._used = used
        self.episodes_added, self.steps_added = int(counters[0]), int(counters[1])


class MemoryItem(NamedTuple):
    obs: Any
    latent: Any
    action: Any


class ShortTermMemory:
    """The actor's short-term memory: the most recent ``(obs, latent, action)`` triples, oldest first."""

    def __init__(self, maxlen: int) -> None:
        if int(maxlen) < 1:
            raise ValueError(f"maxlen must be >= 1, got {maxlen!r}")
        self.maxlen = int(maxlen)
        self._items: deque[MemoryItem] = deque(maxlen=self.maxlen)

    def push(self, obs: Any, latent: Any = None, action: Any = None) -> None:
        self._items.append(MemoryItem(obs, latent, action))

    def recent(self, k: int | None = None) -> list[MemoryItem]:
        """The last ``k`` items (all when ``k`` is None), oldest first."""
        items = list(self._items)
        if k is None:
            return items
        if int(k) < 0:
            raise ValueError(f"k must be >= 0, got {k!r}")
        return items[len(items) - min(int(k), len(items)):]

    def latest(self) -> MemoryItem | None:
        return self._items[-1] if self._items else None

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
