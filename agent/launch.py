"""Launch files: one YAML file per experiment in ``launch/``, loaded into a validated ``LaunchConfig``.

Every key is checked against the dataclass tree below: an unknown key or a value of the wrong type
is a ValueError naming the key and the file. ``world_model``, ``planner.params``, ``cost`` and
``env.kwargs`` are free-form mappings (validated by the code that consumes them); ``guardrails``
is a list of guardrail specs (``agent.guardrails``), validated here. Overrides such as
``["training.steps=500", "planner.params.horizon=8"]`` are applied before validation; their values
are parsed as YAML (never evaluated as code).

YAML is read with ``agent.typed_yaml.Loader`` (a SafeLoader that rejects duplicate keys and reads
``1e-3`` as a float); the sections are built by ``agent.typed_yaml.build``.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent.adaptation import AdaptationConfig
from agent.cost import READOUT_PREFIX, TERM_NAMES, CriticTailConfig, unknown_terms
from agent.escape import EscapeConfig
from agent.exploration import RANDOM_ACTIONS
from agent.guardrails import make_guardrail
from agent.typed_yaml import Loader, build, dotted
from planners.hierarchical import HierarchyConfig

OBS_MODES = ("state", "pixels")
GUARDRAIL_MODES = ("hard", "soft")
GUARDRAIL_FALLBACKS = ("declared", "least_violation")
SEED_POLICIES = ("random", "play")
# the last four: checked by their config classes
FREE_FORM = {("world_model",), ("planner", "params"), ("cost",), ("env", "kwargs"), ("evaluation",),
             ("hierarchy",), ("adaptation",), ("escape",), ("critic_tail",)}
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class EnvSection:
    id: str
    obs: str = "state"
    action_repeat: int | None = None
    image_size: int = 64
    frame_stack: int = 1   # observe the last K observations (pixels: so that velocities are visible)
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class PlannerSection:
    name: str = "mppi"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainingSection:
    steps: int = 10_000              # environment steps in total
    seed_steps: int = 1_000          # random-action steps before the first model update
    batch_size: int = 64
    updates_per_step: int = 1        # world-model gradient steps per environment step
    # ... taken every `update_every` environment steps (a ratio below one, as SB3's train_freq: pixel updates
    # cost ~130 ms on one CPU thread, so a 100k pixel run updates every few steps)
    update_every: int = 1
    eval_every: int = 2_000          # environment steps between evaluations (0: never)
    eval_episodes: int = 5
    checkpoint_every: int = 5_000    # environment steps between checkpoints (0: only at the end)
    exploration_noise: float = 0.3   # std of Gaussian noise added to planned actions while training
    replan_every: int = 1            # execute this many planned actions before replanning
    episode_steps: int | None = None  # None: the env's own time limit
    # With a hierarchy: the share of training episodes that head for the least visited landmark
    # instead of the task's goal (exploration toward what the agent has barely seen).
    explore_frontier: float = 0.0
    # Go, then explore: random steps (random_actions) taken on reaching each least visited landmark, before
    # heading for the next one from where they end (0: straight to the next one).
    explore_steps: int = 0
    # The share of those heads that go instead for a landmark the graph cannot route to, next to one
    # it can (HierarchicalPlanner.bridge: toward a part of the maze no episode has joined to this one),
    # given up after `explore_patience` steps.
    explore_bridge: float = 0.0
    explore_patience: int = 200
    # What fills the replay before the first update: "random" (random_actions below) or "play" (the
    # task's scripted goal-blind play policy, e.g. Push's pusher walking round its block and pushing it
    # about: random actions move the block in 4% of steps, play in half of them).
    seed_policy: str = "random"
    # The random steps of seeding and of exploring episodes: "sticky" (a uniform random action held
    # 1..10 steps) or "tumble" (a full-force direction held until the agent is stuck or 1..100 steps
    # pass: it crosses a one-cell door far more often); see agent.exploration.
    random_actions: str = "sticky"
    # The model update of each step runs in a second thread while the next step plans (with the weights
    # of the update before: one update stale). On 2 cores with --threads 1 a step takes about the longer
    # of plan and update instead of their sum (BENCHMARKS.md). Off: plan, env step, update in turn.
    overlap_update: bool = False


@dataclass
class LaunchConfig:
    name: str
    env: EnvSection
    world_model: dict[str, Any] = field(default_factory=dict)
    planner: PlannerSection = field(default_factory=PlannerSection)
    cost: dict[str, float] = field(default_factory=lambda: {"goal": 1.0})
    # Hard constraints on the predicted trajectory (agent.guardrails), kept apart from the cost.
    guardrails: list[dict[str, Any]] = field(default_factory=list)
    # "hard": constraints (feasible plans first, fallback otherwise); "soft": the baseline that only
    # adds their violation to the cost as the term guardrail_penalty (weight cost.guardrail_penalty)
    guardrail_mode: str = "hard"
    # Check guardrails on the first N predicted steps only (None: the whole planning horizon). The
    # readout error grows with the step, and widened that far the zones can close every path; the
    # steps beyond N still count in the cost, and the plan is re-checked at every step.
    guardrail_horizon: int | None = None
    # When no plan is predicted feasible: "declared" takes the task's safe fallback (e.g. a brake);
    # "least_violation" takes it too, unless it is itself predicted to violate at the next step and
    # the best plan's first action is predicted to violate less (e.g. a start beside a hazard, where
    # braking keeps the arm inside the widened zone for good and a step away clears it).
    guardrail_fallback: str = "declared"
    # Hierarchical planning (planners.hierarchical.HierarchyConfig: landmarks, max_edge, reach,
    # replan_every): subgoals routed over a landmark graph of visited latents, the planner above
    # going to the current one. Needs the learned cost-to-go (world_model.value_hidden > 0). None: flat.
    hierarchy: dict[str, Any] | None = None
    # Decision-time correction of the world model by this episode's own prediction misses
    # (agent.adaptation.AdaptationConfig: size, latent_scale, action_scale). None: the model as trained.
    adaptation: dict[str, Any] | None = None
    # Reward tasks: a random full-force tumble when the critic's value n steps back exceeds what followed
    # (agent.escape.EscapeConfig: window, threshold, steps). None: never.
    escape: dict[str, Any] | None = None
    # Reward tasks: the critic term's value moved toward the model's imagination of the policy beyond the
    # plan (agent.cost.CriticTailConfig: steps, trust). None: the critic's value.
    critic_tail: dict[str, Any] | None = None
    # Decision-time settings for evaluation only (`oda eval` / `record` / `benchmark` and the trainer's
    # periodic evaluations), applied before any command-line override: e.g. an agent trained with the
    # flat planner that plans over a hierarchy once trained. Keys: those of EVAL_OVERRIDABLE.
    evaluation: dict[str, Any] = field(default_factory=dict)
    training: TrainingSection = field(default_factory=TrainingSection)
    seed: int = 0
    device: str = "auto"
    run_dir: str = ""                # "" -> runs/<name>

    def __post_init__(self) -> None:
        if not self.run_dir:
            self.run_dir = f"runs/{self.name}"
        unknown = [k for k in self.evaluation if not _eval_overridable(k)]
        if unknown:
            raise ValueError(f"evaluation: {unknown} cannot change at evaluation time; only "
                             f"{', '.join(EVAL_OVERRIDABLE)} may (the world model was trained with the rest)")

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON/YAML-safe); ``from_dict`` of it gives an equal config."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> LaunchConfig:
        return build(cls, data, (), source, _check_ranges)


# ---------------------------------------------------------------------- validation


def _check_ranges(obj: Any, path: tuple[str, ...], source: str) -> None:
    def bad(key: str, why: str) -> ValueError:
        return ValueError(f"{source}: '{dotted((*path, key))}' {why}, got {getattr(obj, key)!r}")

    if isinstance(obj, EnvSection):
        if not obj.id:
            raise bad("id", "must be a non-empty env id")
        if obj.obs not in OBS_MODES:
            raise bad("obs", f"must be one of {OBS_MODES}")
        if obj.action_repeat is not None and obj.action_repeat < 1:
            raise bad("action_repeat", "must be >= 1 or null")
        if obj.image_size < 8:
            raise bad("image_size", "must be >= 8")
        if obj.frame_stack < 1:
            raise bad("frame_stack", "must be >= 1")
    elif isinstance(obj, PlannerSection) and not obj.name:
        raise bad("name", "must be a non-empty planner name")
    elif isinstance(obj, TrainingSection):
        minimum = {"steps": 1, "seed_steps": 0, "batch_size": 1, "updates_per_step": 0, "update_every": 1,
                   "eval_every": 0, "eval_episodes": 0, "checkpoint_every": 0, "exploration_noise": 0.0,
                   "replan_every": 1, "explore_steps": 0, "explore_patience": 1}
        for key, low in minimum.items():
            if getattr(obj, key) < low:
                raise bad(key, f"must be >= {low}")
        if obj.episode_steps is not None and obj.episode_steps < 1:
            raise bad("episode_steps", "must be >= 1 or null")
        if not 0.0 <= obj.explore_frontier <= 1.0:
            raise bad("explore_frontier", "must be in [0, 1]")
        if not 0.0 <= obj.explore_bridge <= 1.0:
            raise bad("explore_bridge", "must be in [0, 1]")
        if obj.seed_policy not in SEED_POLICIES:
            raise bad("seed_policy", f"must be one of {SEED_POLICIES}")
        if obj.random_actions not in RANDOM_ACTIONS:
            raise bad("random_actions", f"must be one of {RANDOM_ACTIONS}")
    elif isinstance(obj, LaunchConfig):
        if not _NAME.match(obj.name):
            raise bad("name", "must be letters, digits, '_', '.', '-' (it names the run directory)")
        if not _DEVICE.match(obj.device):
            raise bad("device", "must be 'auto', 'cpu', 'cuda' or 'cuda:N'")
        unknown = unknown_terms(obj.cost)
        if unknown:
            raise ValueError(f"{source}: unknown cost term(s) {unknown} in 'cost' (valid: {sorted(TERM_NAMES)} "
                             f"and '{READOUT_PREFIX}<measurement>')")
        if obj.guardrail_horizon is not None and obj.guardrail_horizon < 1:
            raise bad("guardrail_horizon", "must be an int >= 1 or null")
        if obj.training.explore_frontier > 0 and obj.hierarchy is None:
            raise ValueError(f"{source}: 'training.explore_frontier' heads for landmarks: it needs a 'hierarchy'")
        for name, section in (("hierarchy", HierarchyConfig), ("adaptation", AdaptationConfig),
                              ("escape", EscapeConfig), ("critic_tail", CriticTailConfig)):
            if getattr(obj, name) is not None:
                try:
                    section(**getattr(obj, name))
                except (TypeError, ValueError) as err:
                    raise ValueError(f"{source}: '{name}': {err} (valid keys: "
                                     f"{', '.join(f.name for f in dataclasses.fields(section))})") from None
        if obj.guardrail_mode not in GUARDRAIL_MODES:
            raise bad("guardrail_mode", f"must be one of {GUARDRAIL_MODES}")
        if obj.guardrail_fallback not in GUARDRAIL_FALLBACKS:
            raise bad("guardrail_fallback", f"must be one of {GUARDRAIL_FALLBACKS}")
        for term, weight in obj.cost.items():
            if weight < 0:
                raise ValueError(f"{source}: 'cost.{term}' must be >= 0, got {weight!r}")
        for i, spec in enumerate(obj.guardrails):
            try:
                make_guardrail(spec)
            except ValueError as err:
                raise ValueError(f"{source}: 'guardrails.{i}': {err}") from None


# ---------------------------------------------------------------------- overrides

def parse_overrides(overrides: list[str] | dict | None) -> list[tuple[str, Any]]:
    if overrides is None:
        return []
    if isinstance(overrides, dict):
        return [(str(k), v) for k, v in overrides.items()]
    out = []
    for item in overrides:
        key, sep, text = str(item).partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r}: expected key=value, e.g. training.steps=500")
        try:
            value = yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            raise ValueError(f"override {item!r}: value is not valid YAML ({exc})") from exc
        out.append((key.strip(), value))
    return out


def apply_override(data: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted ``key`` in the raw launch dict; only free-form sections may gain new keys."""
    parts = tuple(key.split("."))
    if any(not p for p in parts):
        raise ValueError(f"override {key!r}: empty path segment")
    cls: Any = LaunchConfig
    for i, part in enumerate(parts):
        if any(parts[:j] in FREE_FORM for j in range(1, i + 1)):
            break  # inside a free-form mapping: any key may be created
        fields = [f.name for f in dataclasses.fields(cls)] if cls is not None else []
        if part not in fields:
            valid = ", ".join(fields) if fields else "none, it is a plain value"
            raise ValueError(f"override {key!r}: unknown key {part!r} under '{dotted(parts[:i])}' (valid: {valid})")
        tp = typing.get_type_hints(cls)[part]
        cls = tp if dataclasses.is_dataclass(tp) else None
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"override {key!r}: '{dotted(parts[:i + 1])}' is {child!r}, not a mapping")
        node = child
    node[parts[-1]] = value


# ---------------------------------------------------------------------- loading

def load_launch(path: str | Path, overrides: list[str] | dict | None = None) -> LaunchConfig:
    """Read, override and validate a launch file; errors name the file and the offending key or line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"launch file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ValueError(f"{path}: malformed YAML at {where}: {exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: malformed YAML: {exc}") from exc
    if data is None:
        raise ValueError(f"{path}: launch file is empty")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be a mapping of sections, got {type(data).__name__}")
    for key, value in parse_overrides(overrides):
        apply_override(data, key, value)
    return LaunchConfig.from_dict(data, source=str(path))


#: what may change at evaluation time without retraining (the world model and its inputs may not)
EVAL_OVERRIDABLE = ("guardrails", "guardrail_mode", "guardrail_horizon", "guardrail_fallback", "cost", "env.kwargs",
                    "planner", "training.replan_every", "hierarchy", "adaptation", "escape", "critic_tail")


def _eval_overridable(key: str) -> bool:
    return any(key == p or key.startswith(p + ".") for p in EVAL_OVERRIDABLE)


def eval_overrides(cfg: LaunchConfig, overrides: list[str] | None) -> LaunchConfig:
    """A trained run's config for evaluation: its launch file's ``evaluation`` settings, then the
    decision-time overrides (e.g. ``guardrails=[...]``) applied. The result's ``evaluation`` is empty
    (already applied: applying twice would undo an override of the same key)."""
    if not overrides and not cfg.evaluation:
        return cfg
    parsed = parse_overrides(overrides or [])
    for key, _ in parsed:
        if not _eval_overridable(key):
            raise ValueError(f"override {key!r}: at evaluation only {', '.join(EVAL_OVERRIDABLE)} may change "
                             f"(the world model was trained with the rest)")
    data = cfg.to_dict()
    for key, value in [*cfg.evaluation.items(), *parsed]:
        apply_override(data, key, value)
    data["evaluation"] = {}
    if data.get("hierarchy") is None:  # planning flat a run trained with frontier exploration: a training
        data["training"]["explore_frontier"] = 0.0  # setting, unused at evaluation
    return LaunchConfig.from_dict(data, source="evaluation overrides")
