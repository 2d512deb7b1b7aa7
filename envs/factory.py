"""`make`: build any registered task with the agent-facing wrappers."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from envs.registry import get_spec
from envs.wrappers import ActionRepeat, AgentActions


def make(env_id: str, obs: str = "state", seed: int | None = None, image_size: int = 64,
         action_repeat: int | None = None, render_mode: str | None = "rgb_array", **task_kwargs: Any) -> gym.Env:
    """Build task ``env_id`` for an agent.

    Args:
        env_id: a registered id (``oda envs`` lists them), e.g. ``"oda/PointMaze-v0"``,
            ``"dmc/walker-walk"``, ``"gym/Hopper-v5"``.
        obs: ``"state"`` (float32 vector), ``"pixels"`` (uint8 ``image_size x image_size x 3``)
            or ``"both"`` (a dict with the two).
        seed: seeds the first ``reset()`` that is called without a seed, and the action space.
        image_size: side of pixel observations and of ``render()``.
        action_repeat: simulator steps per agent step (rewards summed); ``None`` takes the
            family's default (2 for the dm_control suite, as TD-MPC2 and DrQ use; 1 otherwise).
        task_kwargs: passed to the task (e.g. ``layout="4x4"`` for PointMaze).

    Actions are in [-1, 1] for every task; episodes are truncated after
    ``ceil(episode_steps / action_repeat)`` agent steps.
    """
    spec = get_spec(env_id)
    base = spec.factory(obs=obs, image_size=image_size, render_mode=render_mode, **task_kwargs)
    k = spec.action_repeat if action_repeat is None else action_repeat
    env: gym.Env = base
    if k != 1:
        env = ActionRepeat(env, k)
    env = AgentActions(env)
    env = gym.wrappers.TimeLimit(env, max_episode_steps=-(-base.episode_steps // k))
    if seed is not None:
        base.seed_next_reset(seed)
        env.action_space.seed(seed)
    return env


def _gymnasium_entry(task_id: str, **kwargs: Any) -> gym.Env:
    """Entry point behind ``gymnasium.make(id)`` for every registered task."""
    return make(task_id, **kwargs)
