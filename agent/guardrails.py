"""Guardrails: hard limits on what the planner may execute, kept apart from costs.

A guardrail scores a predicted trajectory (the named measurements decoded by the world model's
readout heads from the predicted latents, and the actions) with a per-step violation amount
>= 0, where 0 means satisfied. Costs are traded off by weights; guardrails are not: the planners
rank every feasible candidate before every infeasible one (``planners.base.rank``) and the actor
executes only a plan predicted feasible.

Declarative, in launch files or as an override (values are YAML data, never evaluated)::

    guardrails:
      - {type: keep_out, key: ee_pos, center: [-0.02, -0.13], radius: 0.04}
      - {type: speed_limit_in_zone, speed_key: ee_speed, position_key: ee_pos,
         center: [0.09, 0.08], radius: 0.05, limit: 0.2}
      - {type: bound, key: joint_vel, low: [-8, -8], high: [8, 8]}
      - {type: action_rate, limit: 0.5}

In Python: subclass `Guardrail` as a dataclass and register it with ``@register_guardrail``.
``margin`` widens every guardrail (zone radius, bound) to absorb model error. ``horizon: N``
checks one guardrail on the first N predicted steps only (the set's ``horizon`` caps them all).
``error_horizon: N`` widens it by the calibrated readout error on the first N steps only and
checks the later ones on the prediction itself (with ``margin``): the next steps are certified
while the plan still sees a zone coming early enough to brake, and the error, which grows with
the step, does not wall off goals beside a zone.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from planners.base import check_float

GUARDRAILS: dict[str, type[Guardrail]] = {}
Readout = Callable[[Tensor], dict[str, Tensor]]  # latents [..., D] -> {name: [..., k]}
# Readout error bound per measurement and predicted step ({name: [H]}, broadcast over samples):
# a guardrail treats the true value as anywhere within that distance of the readout.
Errors = dict[str, Tensor]


def _err(err: Errors, key: str, like: Tensor) -> Tensor | float:
    """The error bound of ``key`` shaped to broadcast against ``like`` [N, H] (0 when unknown)."""
    e = err.get(key)
    if e is None:
        return 0.0
    e, horizon = e.to(like).reshape(-1), like.shape[-1]
    if e.shape[0] < horizon:  # steps beyond the calibrated ones keep the last bound
        e = torch.cat([e, e[-1:].expand(horizon - e.shape[0])])
    return e[:horizon]


def _first_steps(err: Errors, steps: int, horizon: int) -> Errors:
    """``err`` over ``steps`` predicted steps with the bounds from step ``horizon`` on set to 0."""
    out = {}
    for key, e in err.items():
        e = _err(err, key, e.new_zeros(steps)).clone()
        e[horizon:] = 0.0
        out[key] = e
    return out


def register_guardrail(name: str) -> Callable[[type[Guardrail]], type[Guardrail]]:
    def decorator(cls: type[Guardrail]) -> type[Guardrail]:
        if name in GUARDRAILS:
            raise ValueError(f"guardrail type {name!r} is already registered")
        cls.type_name = name
        GUARDRAILS[name] = cls
        return cls

    return decorator


def _vector(name: str, value: Any, length: int | None = None) -> tuple[float, ...]:
    values = (value,) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or a list of numbers, got {value!r}") from None
    if not out or not all(math.isfinite(v) for v in out) or (length is not None and len(out) != length):
        raise ValueError(f"{name} must be {length or 'one or more'} finite number(s), got {value!r}")
    return out


def _horizon(name: str, value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be an int >= 1 or None, got {value!r}")
    return value


def _number(name: str, value: Any) -> float:
    check_float(name, value, 0.0)
    return float(value)


@dataclass
class Guardrail:
    """Base: ``violation`` maps readouts {key: [N, H, k]} and actions [N, H, A] to [N, H] >= 0,
    taking each readout as uncertain by ``err[key]`` (worst case within that distance)."""

    margin: float = 0.0
    horizon: int | None = None  # check the first `horizon` predicted steps only (None: all)
    error_horizon: int | None = None  # widen by the readout error on the first N steps only (None: all)
    type_name: ClassVar[str] = ""

    def __post_init__(self) -> None:
        self.margin = _number(f"{self.type_name}.margin", self.margin)
        self.horizon = _horizon(f"{self.type_name}.horizon", self.horizon)
        self.error_horizon = _horizon(f"{self.type_name}.error_horizon", self.error_horizon)
        self.validate()

    def validate(self) -> None:
        """Check and normalise fields; raise ValueError naming the bad one."""

    def measurement_keys(self) -> tuple[str, ...]:
        return ()

    def region_distance(self, m: dict[str, Tensor]) -> Tensor | None:
        """How far the true measurements ``m`` ({key: [..., k]}) lie from where this guardrail
        can be violated ([...], 0 inside), or None when it can be violated anywhere.
        Calibration near the region (``agent.calibration``) uses it."""
        return None

    def violation(self, m: dict[str, Tensor], actions: Tensor, last_action: Tensor | None,
                  err: Errors) -> Tensor:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type_name, **dataclasses.asdict(self)}


def _point(m: dict[str, Tensor], key: str, dims: int) -> Tensor:
    value = m[key]
    if value.shape[-1] < dims:
        raise ValueError(f"measurement {key!r} has {value.shape[-1]} components, the guardrail needs {dims}")
    return value[..., :dims]


@register_guardrail("keep_out")
@dataclass
class KeepOut(Guardrail):
    """The point ``key`` stays at least ``radius + margin`` from ``center`` (a disc or ball)."""

    key: str = ""
    center: Any = ()
    radius: float | None = None  # required

    def validate(self) -> None:
        if not self.key:
            raise ValueError("keep_out.key (a position measurement) is required")
        self.center = _vector("keep_out.center", self.center)
        self.radius = _number("keep_out.radius", self.radius)

    def measurement_keys(self) -> tuple[str, ...]:
        return (self.key,)

    def region_distance(self, m: dict[str, Tensor]) -> Tensor:
        p = _point(m, self.key, len(self.center))
        return torch.relu(torch.linalg.vector_norm(p - p.new_tensor(self.center), dim=-1) - self.radius)

    def violation(self, m: dict[str, Tensor], actions: Tensor, last_action: Tensor | None,
                  err: Errors) -> Tensor:
        p = _point(m, self.key, len(self.center))
        distance = torch.linalg.vector_norm(p - p.new_tensor(self.center), dim=-1)
        return torch.relu(self.radius + self.margin + _err(err, self.key, distance) - distance)


@register_guardrail("keep_out_box")
@dataclass
class KeepOutBox(Guardrail):
    """The point ``key`` stays outside the box ``[low, high]`` grown by ``margin`` on every side;
    the violation is the depth inside (distance to the nearest face)."""

    key: str = ""
    low: Any = ()
    high: Any = ()

    def validate(self) -> None:
        if not self.key:
            raise ValueError("keep_out_box.key (a position measurement) is required")
        self.low = _vector("keep_out_box.low", self.low)
        self.high = _vector("keep_out_box.high", self.high, len(self.low))
        if any(lo >= hi for lo, hi in zip(self.low, self.high, strict=True)):
            raise ValueError(f"keep_out_box needs low < high in every dimension, got {self.low} and {self.high}")

    def measurement_keys(self) -> tuple[str, ...]:
        return (self.key,)

    def region_distance(self, m: dict[str, Tensor]) -> Tensor:
        p = _point(m, self.key, len(self.low))
        outside = torch.maximum(p.new_tensor(self.low) - p, p - p.new_tensor(self.high))
        return torch.linalg.vector_norm(torch.relu(outside), dim=-1)

    def violation(self, m: dict[str, Tensor], actions: Tensor, last_action: Tensor | None,
                  err: Errors) -> Tensor:
        p = _point(m, self.key, len(self.low))
        depth = torch.minimum(p - p.new_tensor(self.low), p.new_tensor(self.high) - p).min(dim=-1).values
        return torch.relu(depth + self.margin + _err(err, self.key, depth))


@register_guardrail("speed_limit_in_zone")
@dataclass
class SpeedLimitInZone(Guardrail):
    """While the point ``position_key`` is within ``radius + margin`` of ``center``, the scalar
    ``speed_key`` stays at or below ``limit - speed_margin``."""

    speed_key: str = ""
    position_key: str = ""
    center: Any = ()
    radius: float | None = None  # required
    limit: float | None = None  # required
    speed_margin: float = 0.0

    def validate(self) -> None:
        if not self.speed_key or not self.position_key:
            raise ValueError("speed_limit_in_zone needs speed_key and position_key (measurement names)")
        self.center = _vector("speed_limit_in_zone.center", self.center)
        self.radius = _number("speed_limit_in_zone.radius", self.radius)
        self.limit = _number("speed_limit_in_zone.limit", self.limit)
        self.speed_margin = _number("speed_limit_in_zone.speed_margin", self.speed_margin)

    def measurement_keys(self) -> tuple[str, ...]:
        return (self.speed_key, self.position_key)

    def region_distance(self, m: dict[str, Tensor]) -> Tensor:
        p = _point(m, self.position_key, len(self.center))
        return torch.relu(torch.linalg.vector_norm(p - p.new_tensor(self.center), dim=-1) - self.radius)

    def violation(self, m: dict[str, Tensor], actions: Tensor, last_action: Tensor | None,
                  err: Errors) -> Tensor:
        p = _point(m, self.position_key, len(self.center))
        distance = torch.linalg.vector_norm(p - p.new_tensor(self.center), dim=-1)
        inside = distance <= self.radius + self.margin + _err(err, self.position_key, distance)
        speed = _point(m, self.speed_key, 1)[..., 0] + _err(err, self.speed_key, distance)
        return torch.relu(speed - (self.limit - self.speed_margin)) * inside


@register_guardrail("bound")
@dataclass
class Bound(Guardrail):
    """Every component of ``key`` stays within ``[low + margin, high - margin]`` (either side
    optional; a scalar applies to every component). The violation sums the excess."""

    key: str = ""
    low: Any = None
    high: Any = None

    def validate(self) -> None:
        if not self.key:
            raise ValueError("bound.key (a measurement) is required")
        if self.low is None and self.high is None:
            raise ValueError("bound needs low, high or both")
        self.low = None if self.low is None else _vector("bound.low", self.low)
        self.high = None if self.high is None else _vector("bound.high", self.high)

    def measurement_keys(self) -> tuple[str, ...]:
        return (self.key,)

    def violation(self, m: dict[str, Tensor], actions: Tensor, last_action: Tensor | None,
                  err: Errors) -> Tensor:
        x = m[self.key]
        e = _err(err, self.key, x[..., 0])
        e = e[..., None] if isinstance(e, Tensor) else e
        out = torch.zeros_like(x)
        if self.high is not None:
            out = out + torch.relu(x + e - (x.new_tensor(self.high) - self.margin))
        if self.low is not None:
            out = out + torch.relu(x.new_tensor(self.low) + self.margin - (x - e))
        return out.sum(-1)


@register_guardrail("action_bound")
@dataclass
class ActionBound(Guardrail):
    """Every action component stays within ``[-limit, limit]`` (actions live in [-1, 1])."""

    limit: float = 1.0

    def validate(self) -> None:
        self.limit = _number("action_bound.limit", self.limit)

    def violation(self, m: dict[str, Tensor], actions: Tensor, last_action: Tensor | None,
                  err: Errors) -> Tensor:
        return torch.relu(actions.abs() - (self.limit - self.margin)).sum(-1)


@register_guardrail("action_rate")
@dataclass
class ActionRate(Guardrail):
    """Each action component changes by at most ``limit`` per step, the first step counted from
    the last executed action (none at the start of an episode)."""

    limit: float = 2.0

    def validate(self) -> None:
        self.limit = _number("action_rate.limit", self.limit)

    def violation(self, m: dict[str, Tensor], actions: Tensor, last_action: Tensor | None,
                  err: Errors) -> Tensor:
        first = actions[:, :1] if last_action is None else last_action.to(actions).expand_as(actions[:, :1])
        previous = torch.cat([first, actions[:, :-1]], dim=1)
        return torch.relu((actions - previous).abs() - (self.limit - self.margin)).sum(-1)


def make_guardrail(spec: dict[str, Any] | Guardrail) -> Guardrail:
    """A guardrail from its declarative form ``{type: ..., field: value, ...}``."""
    if isinstance(spec, Guardrail):
        return spec
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"a guardrail is a mapping with a 'type' key, got {spec!r}")
    kind = spec["type"]
    if kind not in GUARDRAILS:
        raise ValueError(f"unknown guardrail type {kind!r}; known: {sorted(GUARDRAILS)}")
    cls = GUARDRAILS[kind]
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(spec) - fields - {"type"})
    if unknown:
        raise ValueError(f"unknown {kind} field(s) {unknown}; valid: {sorted(fields)}")
    return cls(**{k: v for k, v in spec.items() if k != "type"})


class GuardrailSet:
    """The planners' ``Constraint``: readouts of the predicted latents -> total violation [N].

    ``last_action`` (set by the actor after each executed action) anchors rate limits;
    ``errors`` ({measurement: [H]}, e.g. from `agent.calibration`) widens every guardrail by the
    readout error of the world model at each predicted step.
    """

    def __init__(self, guardrails: list[dict[str, Any] | Guardrail], readout: Readout,
                 readout_keys: tuple[str, ...] | list[str], horizon: int | None = None) -> None:
        self.horizon = _horizon("guardrail horizon", horizon)  # check only the first `horizon` steps (None: all)
        self.guardrails = [make_guardrail(g) for g in guardrails]
        if not self.guardrails:
            raise ValueError("a GuardrailSet needs at least one guardrail")
        # the measurements these guardrails read, so a readout can skip the others
        self.measurement_keys = tuple(sorted({k for g in self.guardrails for k in g.measurement_keys()}))
        missing = sorted(set(self.measurement_keys) - set(readout_keys))
        if missing:
            raise ValueError(f"guardrail measurement(s) {missing} have no readout head; "
                             f"the world model reads out {sorted(readout_keys)}")
        self.readout = readout
        self.last_action: Tensor | None = None
        self.errors: Errors = {}

    def near(self, m: dict[str, Tensor], radius: float) -> dict[str, Tensor | None]:
        """{measurement: mask [...]} of the true measurements ``m`` lying within ``radius`` of a
        region where a guardrail reading that measurement can be violated (None: everywhere).

        Only there can a readout error turn "predicted safe" into a violation, so calibrating
        the error on those samples alone still bounds the case that matters."""
        out: dict[str, Tensor | None] = {}
        for key in self.measurement_keys:
            masks = []
            for g in self.guardrails:
                if key not in g.measurement_keys():
                    continue
                distance = g.region_distance(m)
                if distance is None:
                    masks = None
                    break
                masks.append(distance <= radius)
            out[key] = None if masks is None else torch.stack(masks).any(0)
        return out

    def per_guardrail(self, z: Tensor, actions: Tensor) -> dict[str, Tensor]:
        """{"<i>:<type>": violation [N, H']} for latents z [N, H, D] and actions [N, H, A], over the
        first H' = min(H, horizon) predicted steps; 0 beyond a guardrail's own ``horizon``, and
        without the readout error beyond its ``error_horizon``."""
        if self.horizon is not None:
            z, actions = z[:, : self.horizon], actions[:, : self.horizon]
        m = self.readout(z)
        steps = torch.arange(z.shape[1], device=z.device)
        out = {}
        for i, g in enumerate(self.guardrails):
            err = self.errors if g.error_horizon is None else _first_steps(self.errors, z.shape[1], g.error_horizon)
            v = g.violation(m, actions, self.last_action, err)
            out[f"{i}:{g.type_name}"] = v if g.horizon is None else v * (steps < g.horizon).to(v)
        return out

    def per_step(self, z: Tensor, actions: Tensor) -> Tensor:
        """Total violation per predicted step [N, H]."""
        return torch.stack(list(self.per_guardrail(z, actions).values())).sum(0)

    def __call__(self, z: Tensor, actions: Tensor) -> Tensor:
        return self.per_step(z, actions).sum(-1)

    def to_list(self) -> list[dict[str, Any]]:
        return [g.to_dict() for g in self.guardrails]
