"""Shared planner machinery: the callable types, `Plan`, the `Planner` base class, the warm-start
buffer, constrained ranking and the batched evaluation of candidate action sequences.

Conventions shared by every planner:

- actions always lie in [-1, 1] (samples are clamped, gradient steps projected);
- one candidate batch is evaluated with ONE ``dynamics(z0.expand(N, D), actions)`` call;
- with a constraint, candidates are ranked feasible first (violation <= 0) by cost, then the
  infeasible ones by violation;
- the returned `Plan` comes from one final evaluation of the few final candidates, so its
  ``latents``, ``cost``, ``terms`` and ``feasible`` describe exactly ``Plan.actions``;
- the warm start is the previous plan's returned sequence; `Planner.shift` drops executed steps
  and pads the end with ZEROS (a neutral "no force" prior that the next search refines,
  rather than extrapolating the least-optimised last action).
"""

from __future__ import annotations

import abc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

Dynamics = Callable[[Tensor, Tensor], Tensor]  # (z0 [N, D], actions [N, H, A]) -> z [N, H, D]
Objective = Callable[[Tensor, Tensor], tuple[Tensor, dict[str, Tensor]]]  # -> (cost [N], {term: [N]})
Constraint = Callable[[Tensor, Tensor], Tensor]  # (z, actions) -> violation [N] >= 0; <= 0 is feasible


@dataclass
class Plan:
    actions: Tensor  # [H, A] in [-1, 1]
    latents: Tensor  # [H, D] predicted latent trajectory of `actions`
    cost: float  # total objective of `actions`
    terms: dict[str, float]
    feasible: bool = True  # False when a constraint was given and no feasible sequence was found
    info: dict = field(default_factory=dict)  # elapsed_ms, iterations, evaluations, init_mean, ...


def check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def check_float(name: str, value: Any, low: float, high: float = math.inf, *, low_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        bound = f"{'>' if low_open else '>='} {low}" + (f" and <= {high}" if high < math.inf else "")
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")


PRECISIONS: dict[str, torch.dtype | None] = {"float32": None, "bfloat16": torch.bfloat16}


@dataclass
class PlannerConfig:
    horizon: int = 10
    # "bfloat16" rolls candidates out under autocast (costs are still scored in float32): about 2x
    # faster for models with hidden width >= 384 on CPUs with AMX/AVX512-BF16 and on GPUs, slower for
    # tiny models on CPU (BENCHMARKS.md).
    precision: str = "float32"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_int("horizon", self.horizon, 1)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {self.precision!r}")


@dataclass
class SamplingConfig(PlannerConfig):
    """Shared by CEM and MPPI. The std restarts at ``init_std`` on every `plan` call (only the mean
    is warm-started): a std carried over after convergence sits at ``min_std`` and could not
    re-explore when the goal, the constraint or the state changes."""

    samples: int = 512  # sequences per iteration; sample 0 is always the current mean
    iterations: int = 6
    elites: int = 64
    init_std: float = 0.5
    min_std: float = 0.05
    momentum: float = 0.0  # new = momentum * old + (1 - momentum) * refit, for mean and std
    # With a proposal (``Planner.proposal``, e.g. the mode-1 policy's imagined rollouts), this many
    # of the samples of every iteration are its sequences instead of Gaussian draws.
    policy_samples: int = 24

    def validate(self) -> None:
        super().validate()
        check_int("samples", self.samples, 2)
        check_int("iterations", self.iterations, 1)
        check_int("elites", self.elites, 1)
        if self.elites > self.samples:
            raise ValueError(f"elites ({self.elites}) must be <= samples ({self.samples})")
        check_float("init_std", self.init_std, 0.0, low_open=True)
        check_float("min_std", self.min_std, 0.0)
        check_float("momentum", self.momentum, 0.0, 0.99)
        check_int("policy_samples", self.policy_samples, 0)  # capped at samples - 1 when planning


class WarmStart:
    """The previous plan's action sequence, advanced by `shift` as its actions are executed."""

    def __init__(self, horizon: int, action_dim: int, device: torch.device) -> None:
        self.horizon, self.action_dim, self.device = horizon, action_dim, device
        self._actions: Tensor | None = None

    def reset(self) -> None:
        self._actions = None

    def set(self, actions: Tensor) -> None:
        self._actions = actions.detach().clone()

    def shift(self, steps: int) -> None:
        check_int("steps", steps, 0)
        if self._actions is None or steps == 0:
            return
        kept = self._actions[steps:]
        pad = torch.zeros(self.horizon - kept.shape[0], self.action_dim, device=self.device)
        self._actions = torch.cat([kept, pad])

    def get(self) -> Tensor | None:
        return None if self._actions is None else self._actions.clone()

    def mean(self) -> Tensor:
        """Where the next search starts: the warm start, or zeros on the first plan of an episode."""
        if self._actions is None:
            return torch.zeros(self.horizon, self.action_dim, device=self.device)
        return self._actions.clone()


def sanitize(values: Tensor) -> Tensor:
    """NaN -> +inf, so a diverging model's samples rank last instead of poisoning the sort."""
    return torch.where(torch.isnan(values), torch.full_like(values, math.inf), values)


def rank(cost: Tensor, violation: Tensor | None, k: int | None = None) -> Tensor:
    """Indices of the best ``k`` (all when None) candidates, best first: without a constraint by
    cost; with one, feasible candidates (violation <= 0) by cost, then infeasible ones by violation."""
    if violation is None:
        if k is None:
            return torch.argsort(cost)
        return torch.topk(cost, k, largest=False, sorted=True).indices
    feasible = violation <= 0
    order = torch.argsort(torch.where(feasible, cost, violation), stable=True)
    order = order[torch.argsort((~feasible[order]).to(torch.uint8), stable=True)]
    return order if k is None else order[:k]


def improves(cost: Tensor, violation: Tensor | None, best_cost: Tensor, best_violation: Tensor | None) -> Tensor:
    """Elementwise: is (cost, violation) better than (best_cost, best_violation) under `rank`'s order?"""
    if violation is None or best_violation is None:
        return cost < best_cost
    feasible, best_feasible = violation <= 0, best_violation <= 0
    same = feasible == best_feasible
    return (feasible & ~best_feasible) | (same & torch.where(feasible, cost < best_cost, violation < best_violation))


class Incumbent:
    """The best sequence(s) seen so far under `rank`'s order (feasible first, then by cost); a
    batch of independent incumbents when ``actions`` has leading dims (gradient restarts)."""

    def __init__(self, actions: Tensor, constrained: bool) -> None:
        self.actions = actions
        self.cost = torch.full(actions.shape[:-2], math.inf, device=actions.device)
        self.violation = self.cost.clone() if constrained else None

    def offer(self, actions: Tensor, cost: Tensor, violation: Tensor | None) -> None:
        better = improves(cost, violation, self.cost, self.violation)
        self.actions = torch.where(better[..., None, None], actions, self.actions)
        self.cost = torch.where(better, cost, self.cost)
        if self.violation is not None:
            self.violation = torch.where(better, violation, self.violation)


@dataclass
class Evaluation:
    latents: Tensor  # [N, H, D]
    cost: Tensor  # [N], raw objective (may carry autograd history)
    terms: dict[str, Tensor]
    violation: Tensor | None  # [N] or None without a constraint
    rank_cost: Tensor  # [N], detached, NaN -> inf
    rank_violation: Tensor | None


def evaluate(
    z0: Tensor, actions: Tensor, dynamics: Dynamics, objective: Objective, constraint: Constraint | None
) -> Evaluation:
    """Roll out all ``N`` candidates with one dynamics call and score them; checks the shapes that
    the callables return so a mismatched model or cost fails here with a clear message."""
    n, horizon = actions.shape[:2]
    latents = dynamics(z0.expand(n, z0.shape[-1]), actions)
    if latents.dim() != 3 or tuple(latents.shape[:2]) != (n, horizon):
        raise ValueError(f"dynamics must return [N, H, D] = [{n}, {horizon}, D], got {tuple(latents.shape)}")
    cost, terms = objective(latents, actions)
    if tuple(cost.shape) != (n,):
        raise ValueError(f"objective must return a cost of shape [{n}], got {tuple(cost.shape)}")
    violation = rank_violation = None
    if constraint is not None:
        violation = constraint(latents, actions)
        if tuple(violation.shape) != (n,):
            raise ValueError(f"constraint must return a violation of shape [{n}], got {tuple(violation.shape)}")
        rank_violation = sanitize(violation.detach())
    return Evaluation(latents, cost, terms, violation, sanitize(cost.detach()), rank_violation)


def with_precision(dynamics: Dynamics, precision: str, device: torch.device) -> Dynamics:
    """``dynamics`` run under autocast at ``precision``, returning float32 latents."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return dynamics

    def run(z0: Tensor, actions: Tensor) -> Tensor:
        with torch.autocast(device.type, dtype=dtype):
            return dynamics(z0, actions).float()

    return run


class Planner(abc.ABC):
    """Receding-horizon planner. Subclasses implement `_search`, which returns a few final candidate
    sequences; `plan` evaluates them once more and returns the best as a `Plan`."""

    config_cls: ClassVar[type[PlannerConfig]] = PlannerConfig

    def __init__(
        self, config: PlannerConfig | None, action_dim: int, device: str | torch.device = "cpu", seed: int | None = None
    ) -> None:
        from agent.device import resolve_device  # lazy: agent imports planners, never the other way at load

        config = self.config_cls() if config is None else config
        if not isinstance(config, self.config_cls):
            raise ValueError(f"{type(self).__name__} needs a {self.config_cls.__name__}, got {type(config).__name__}")
        config.validate()
        check_int("action_dim", action_dim, 1)
        if seed is not None:
            check_int("seed", seed, 0)
        self.config = config
        self.action_dim = action_dim
        self.device = resolve_device(device)
        self.generator = torch.Generator(device=self.device)
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)
        self._warm = WarmStart(config.horizon, action_dim, self.device)
        # (z0 [D], count) -> count action sequences [count, H, A] proposed by a fast actor (mode 1):
        # the first warm start of an episode, and candidates for sampling planners (``policy_samples``)
        self.proposal: Callable[[Tensor, int], Tensor] | None = None
        self._proposals: Tensor | None = None

    @property
    def horizon(self) -> int:
        return self.config.horizon

    @property
    def warm_start(self) -> Tensor | None:
        """A copy of the sequence the next plan starts from; None after `reset` (it starts from zeros)."""
        return self._warm.get()

    def reset(self, seed: int | None = None) -> None:
        """Drop the warm start (new episode). With ``seed``, restart the sampling generator from it: an
        episode's draws then depend on its seed alone, not on the episodes run before it in the process."""
        self._warm.reset()
        if seed is not None:
            check_int("seed", seed, 0)
            self.generator.manual_seed(seed)

    def shift(self, steps: int = 1) -> None:
        """Advance the warm start after executing ``steps`` actions of the last plan (zero padding)."""
        self._warm.shift(steps)

    def plan(self, z0: Tensor, dynamics: Dynamics, objective: Objective, constraint: Constraint | None = None) -> Plan:
        """Search an action sequence from latent ``z0`` [D] minimising ``objective`` of the rollout."""
        if not isinstance(z0, Tensor) or z0.dim() != 1:
            raise ValueError(f"z0 must be a 1-d latent tensor [D], got {getattr(z0, 'shape', type(z0))}")
        start = time.perf_counter()
        z0 = z0.detach().to(self.device, torch.float32)
        dynamics = with_precision(dynamics, self.config.precision, self.device)
        init_mean = self._warm.mean()
        self._proposals = None
        if self.proposal is not None:
            wanted = min(getattr(self.config, "policy_samples", 0), getattr(self.config, "samples", 1) - 1)
            count = max(wanted, 1)
            with torch.no_grad():
                self._proposals = self.proposal(z0, count).to(self.device, torch.float32).clamp(-1.0, 1.0)
            if self._warm.get() is None:  # a new episode: start from the policy's plan, not zeros
                init_mean = self._proposals[0].clone()
            if wanted < 1:  # the proposal only warm starts
                self._proposals = None
        candidates, info = self._search(z0, init_mean, dynamics, objective, constraint)
        with torch.no_grad():
            ev = evaluate(z0, candidates, dynamics, objective, constraint)
        best = int(rank(ev.rank_cost, ev.rank_violation, 1)[0])
        actions = candidates[best].detach().clone()
        self._warm.set(actions)
        names = list(ev.terms)
        values = torch.stack([ev.cost[best].float()] + [ev.terms[k][best].float() for k in names]).tolist()
        feasible = True if ev.rank_violation is None else bool(ev.rank_violation[best] <= 0)
        info.update(candidate=best, init_mean=init_mean, elapsed_ms=(time.perf_counter() - start) * 1e3)
        return Plan(
            actions=actions,
            latents=ev.latents[best].detach(),
            cost=values[0],
            terms=dict(zip(names, values[1:], strict=True)),
            feasible=feasible,
            info=info,
        )

    @abc.abstractmethod
    def _search(
        self, z0: Tensor, init_mean: Tensor, dynamics: Dynamics, objective: Objective, constraint: Constraint | None
    ) -> tuple[Tensor, dict[str, Any]]:
        """Return final candidates [M, H, A] in [-1, 1] and an info dict with at least ``iterations``
        and ``evaluations`` (sequences rolled out, the final evaluation of the M candidates included)."""
