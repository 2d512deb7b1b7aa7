"""Build the agent's parts from a launch config: env, world model, planner, cost, actor."""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import envs
from agent.actor import MPCActor, policy_proposal
from agent.adaptation import AdaptationConfig, ResidualMemory
from agent.cost import (
    CRITIC_TERM,
    PENALTY_TERM,
    PRIOR_TERM,
    READOUT_PREFIX,
    TASK_TERM,
    VALUE_TERM,
    CostModule,
    CriticTailConfig,
    readout_term_keys,
)
from agent.escape import EscapeConfig, SurpriseEscape
from agent.guardrails import GuardrailSet
from agent.launch import LaunchConfig
from agent.memory import EpisodeReplay
from planners.hierarchical import HierarchicalPlanner, HierarchyConfig
from planners.registry import make_planner
from world_models.config import WorldModelConfig
from world_models.jepa import JEPAWorldModel


def make_env(cfg: LaunchConfig, seed: int | None = None) -> gym.Env:
    kwargs = dict(cfg.env.kwargs)
    if cfg.training.episode_steps is not None:
        kwargs["episode_steps"] = cfg.training.episode_steps
    env = envs.make(cfg.env.id, obs=cfg.env.obs, seed=seed, image_size=cfg.env.image_size,
                    action_repeat=cfg.env.action_repeat, **kwargs)
    if cfg.env.frame_stack > 1:  # the last K observations, oldest first: [K, *obs_shape]
        env = gym.wrappers.FrameStackObservation(env, cfg.env.frame_stack)
    return env


def env_dims(env: gym.Env) -> tuple[tuple[int, ...], np.dtype, int, dict[str, int]]:
    """Observation shape and dtype, action dim and measurement dims of an env."""
    _, info = env.reset(seed=0)
    space = env.observation_space
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"the agent needs a Box observation space (obs='state' or 'pixels'), got {space}")
    dims = {k: int(np.asarray(v).shape[0]) for k, v in info.get("measurements", {}).items()}
    return tuple(space.shape), space.dtype, int(env.action_space.shape[0]), dims


def world_model_config(cfg: LaunchConfig, obs_shape: tuple[int, ...], action_dim: int,
                       measurement_dims: dict[str, int]) -> WorldModelConfig:
    pixels: dict[str, Any] = {}
    if len(obs_shape) in (3, 4):  # frames [H, W, 3] or stacks [K, H, W, 3]: the conv encoder
        # per-pixel input normalisation: without it, sparse scenes (a small ball on a plain floor)
        # collapse to one latent before the ball's few pixels get through (see BENCHMARKS.md)
        pixels = {"obs_shape": list(obs_shape), "encoder": "conv", "image_normalize": True}
    elif len(obs_shape) != 1:
        raise ValueError(f"observations must be state vectors or frames [(K,) H, W, 3], got shape {obs_shape}")
    known = {f.name for f in dataclasses.fields(WorldModelConfig)}
    unknown = set(cfg.world_model) - known
    if unknown:
        raise ValueError(f"unknown world_model keys {sorted(unknown)}; valid: {sorted(known)}")
    params: dict[str, Any] = {"measurement_dims": measurement_dims, **pixels, **cfg.world_model}
    return WorldModelConfig(obs_dim=int(np.prod(obs_shape)), action_dim=action_dim, **params)


def make_guardrails(cfg: LaunchConfig, model: JEPAWorldModel) -> GuardrailSet | None:
    """The launch file's guardrails over the model's readout heads (None when there are none). Only the
    heads the guardrails read are evaluated: the constraint runs on every candidate of every iteration."""
    if not cfg.guardrails:
        return None
    rails = GuardrailSet(cfg.guardrails, model.readout, model.readout_keys, horizon=cfg.guardrail_horizon)
    rails.readout = partial(model.readout, keys=rails.measurement_keys)
    return rails


def make_actor(cfg: LaunchConfig, model: JEPAWorldModel, action_dim: int, device: torch.device,
               planner: str | None = None, planner_params: dict | None = None,
               env: gym.Env | None = None, mode: str = "plan") -> MPCActor:
    """The MPC actor; with ``env`` (state observations), its task's safe fallback backs the guardrails."""
    name = planner or cfg.planner.name
    # Another planner than the launch file's keeps its horizon only (other settings differ by planner).
    params = dict(cfg.planner.params) if planner in (None, cfg.planner.name) else (
        {"horizon": cfg.planner.params["horizon"]} if "horizon" in cfg.planner.params else {})
    params.update(planner_params or {})
    plan = make_planner(name, action_dim, device=device, seed=cfg.seed, **params)
    fallback = env.unwrapped.safe_action if env is not None and cfg.env.obs == "state" else None
    guardrails = make_guardrails(cfg, model)
    soft = cfg.guardrail_mode == "soft"  # the soft-penalty baseline: no constraint, a weighted cost term
    weights = {PENALTY_TERM: 10.0, **cfg.cost} if soft else dict(cfg.cost)
    if PENALTY_TERM in weights and guardrails is None:
        raise ValueError(f"cost term {PENALTY_TERM!r} and guardrail_mode 'soft' need guardrails")
    if weights.get(VALUE_TERM, 0) > 0 and model.value is None:
        raise ValueError(f"cost term {VALUE_TERM!r} needs a learned value: set world_model.value_hidden > 0 "
                         f"when training")
    if {TASK_TERM, CRITIC_TERM, PRIOR_TERM} & {k for k, w in weights.items() if w > 0} and model.task is None:
        raise ValueError(f"cost terms {TASK_TERM!r}, {CRITIC_TERM!r} and {PRIOR_TERM!r} need a reward head, "
                         f"critic and policy: set world_model.reward_hidden > 0 when training")
    missing = sorted(set(readout_term_keys(k for k, w in weights.items() if w > 0)) - set(model.readout_keys))
    if missing:
        raise ValueError(f"cost terms {[READOUT_PREFIX + k for k in missing]} read measurements the world model has "
                         f"no readout for (it reads out {sorted(model.readout_keys)})")
    cost = CostModule(weights)
    if cost.needs_goal and env is not None and not env.unwrapped.goal_conditioned:
        raise ValueError(f"the cost {dict(cost.weights)} measures toward a goal, but {cfg.env.id} is not "
                         f"goal-conditioned: a reward task plans with cost {{task: 1, critic: 1}}")
    cost.penalty = guardrails
    if model.value is not None:
        cost.value = model.cost_to_go
    cost.task = model.task
    if cfg.critic_tail is not None:
        if model.task is None:
            raise ValueError("critic_tail imagines the policy's rewards beyond the plan: it needs a reward task's "
                             "heads (world_model.reward_hidden > 0 when training)")
        tail = CriticTailConfig(**cfg.critic_tail)
        cost.terminal_value = partial(model.task.tail_value, step=model.predict, steps=tail.steps, trust=tail.trust)
    cost.readout = model.readout
    if model.policy is not None:  # the mode-1 policy proposes candidates and each episode's first plan
        plan.proposal = policy_proposal(model, plan.horizon, generator=plan.generator)
    if cfg.hierarchy is not None:  # subgoals over a landmark graph; flat until build_landmarks is called
        if model.value is None:
            raise ValueError("hierarchy needs the learned cost-to-go that joins its landmarks: set "
                             "world_model.value_hidden > 0 when training")
        hierarchy = HierarchyConfig(**cfg.hierarchy)
        try:  # here rather than at the first subgoal, mid-episode
            cost.unmuted(hierarchy.goal_only_terms)
        except ValueError as err:
            raise ValueError(f"hierarchy goal_only_terms: {err}") from None
        plan = HierarchicalPlanner(plan, hierarchy, steps=model.cost_to_go,
                                   coarse=model.coarse, seed=cfg.seed)
    adaptation = None  # the reactive mode-1 policy plans nothing for a residual memory to correct
    if cfg.adaptation is not None and mode == "plan":
        adaptation = ResidualMemory(model.predict, AdaptationConfig(**cfg.adaptation))
    escape = None
    if cfg.escape is not None and mode == "plan":
        if model.task is None:
            raise ValueError("escape checks the critic's promises: it needs a reward task's critic "
                             "(world_model.reward_hidden > 0 when training)")
        if cfg.guardrails:  # soft ones too: a tumble's action is scored by no cost
            raise ValueError("escape tumbles between plans: it needs mode 'plan' and no guardrails (a tumble's "
                             "action is checked against none)")
        escape = SurpriseEscape(model.task, EscapeConfig(**cfg.escape), action_dim)
    return MPCActor(model, plan, cost, replan_every=cfg.training.replan_every, device=device,
                    guardrails=None if soft else guardrails, fallback=fallback, mode=mode,
                    least_violation=cfg.guardrail_fallback == "least_violation", adaptation=adaptation,
                    escape=escape)


@torch.no_grad()
def build_landmarks(actor: MPCActor, observations: np.ndarray | torch.Tensor, episodes: np.ndarray | None = None,
                    limit: int = 5000, seed: int = 0) -> int:
    """Give a hierarchical actor its landmark graph from observations the agent visited (at most
    ``limit`` of them, drawn at random; all of them, in order, when their ``episodes`` are given, for
    experience edges): encoded, farthest-point sampled, pruned by the guardrails.
    Returns the number of landmarks (0: the actor does not plan hierarchically)."""
    if not isinstance(actor.planner, HierarchicalPlanner):
        return 0
    obs = torch.as_tensor(np.asarray(observations), dtype=torch.float32)
    if episodes is None and obs.shape[0] > limit:
        obs = obs[torch.randperm(obs.shape[0], generator=torch.Generator().manual_seed(seed))[:limit]]
    latents = torch.cat([actor.model.encode(chunk.to(actor.device)) for chunk in obs.split(1024)])
    ids = None if episodes is None else torch.as_tensor(np.asarray(episodes), device=latents.device)
    return len(actor.planner.build_graph(latents, constraint=actor.guardrails, episodes=ids))


def landmarks_from_replay(actor: MPCActor, replay: EpisodeReplay, seed: int = 0, limit: int | None = 5000) -> int:
    """``build_landmarks`` from a replay: ``limit`` of its observations at random (all with None); or,
    for experience edges, whole episodes in time order with the episode of each observation
    (``EpisodeReplay.episode_observations``, ``hierarchy.experience_steps`` at most). A flat actor: 0,
    nothing read."""
    planner = actor.planner
    if not isinstance(planner, HierarchicalPlanner):
        return 0
    if planner.config.edges == "experience":
        observations, episodes = replay.episode_observations(planner.config.experience_steps, seed)
        return build_landmarks(actor, observations, episodes, seed=seed)
    return build_landmarks(actor, replay.observations(limit, seed=seed), seed=seed)
