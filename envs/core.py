"""The one interface every environment of the suite exposes.

`OdaEnv` is the base class of every family's adapter (our own MuJoCo tasks, the dm_control
suite, Gymnasium MuJoCo tasks, optional extras). Agents talk to it and never special-case a
family:

- observations are a float32 state vector (``obs="state"``), a uint8 ``HxWx3`` camera frame
  (``obs="pixels"``) or a dict of both (``obs="both"``);
- ``info["measurements"]`` holds named physical quantities in SI units, same keys every step;
- ``info["safety"]`` holds named ground-truth violation indicators (empty when the task has none);
- ``info["success"]`` is a bool on tasks that have a notion of success;
- goal-conditioned tasks implement ``goal_observation()`` (what the observation would be at the
  goal) and report GoalEnv-style ``info["desired_goal"]`` / ``info["achieved_goal"]``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

OBS_MODES = ("state", "pixels", "both")

# Rendering flags turned off for speed: small frames render 3-6x faster without them.
FAST_RENDER_FLAGS = {"shadow": False, "reflection": False, "skybox": False}
# MuJoCo geom/site group of the marks that only show where the goal is. Frames for people show
# them; pixel observations leave them out by default, since the goal reaches the agent as a goal
# image (a latent that encodes the marker would spend itself on what stays fixed in an episode).
GOAL_GROUP = 5


def measurement(*values: float | np.ndarray) -> np.ndarray:
    """A measurement value: a flat float64 array, 1-d even for a scalar."""
    if len(values) == 1:
        return np.array(values[0], dtype=np.float64).reshape(-1)
    return np.concatenate([np.ravel(v) for v in values]).astype(np.float64)


def checked_episode_steps(value: Any, high: int | None = None) -> int:
    """``value`` as an int if it is one (numpy's included) in [1, high] (no upper bound when ``high`` is None), else a
    ValueError naming it."""
    integer = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not integer or value < 1 or (high is not None and value > high):
        bound = ">= 1" if high is None else f"in [1, {high}]"
        raise ValueError(f"episode_steps must be an int {bound}, got {value!r}")
    return int(value)


def check_obs_mode(obs: str) -> str:
    if obs not in OBS_MODES:
        raise ValueError(f"unknown observation mode {obs!r}; expected one of {OBS_MODES}")
    return obs


def state_space(dim: int) -> gym.spaces.Box:
    return gym.spaces.Box(-np.inf, np.inf, shape=(dim,), dtype=np.float32)


def pixel_space(size: int) -> gym.spaces.Box:
    return gym.spaces.Box(0, 255, shape=(size, size, 3), dtype=np.uint8)


class OdaEnv(gym.Env):
    """Base class: observation modes, rendering at ``image_size`` and the info contract.

    Subclasses set ``self._state_dim`` before calling ``_setup_spaces`` and implement
    ``render_frame``; they build observations with ``_observe(state_vector)``.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 30}
    #: names of the keys of ``info["measurements"]`` / ``info["safety"]``
    measurement_keys: tuple[str, ...] = ()
    safety_keys: tuple[str, ...] = ()
    #: number of simulator control steps in one episode, before any action repeat
    episode_steps: int = 1000
    has_success: bool = False
    goal_conditioned: bool = False

    def __init__(self, obs: str = "state", image_size: int = 64, render_mode: str | None = "rgb_array"):
        self.obs_mode = check_obs_mode(obs)
        if not isinstance(image_size, int) or image_size < 8:
            raise ValueError(f"image_size must be an int >= 8, got {image_size!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode {render_mode!r} is not supported; use 'rgb_array'")
        self.image_size = image_size
        self.render_mode = "rgb_array"
        self._next_seed: int | None = None

    def seed_next_reset(self, seed: int) -> None:
        """Use ``seed`` for the next ``reset()`` that is called without one."""
        self._next_seed = int(seed)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> int | None:  # type: ignore[override]
        """Seed ``np_random``; subclasses call this first and get back the seed in effect
        (``seed``, else the one from ``seed_next_reset``, else None)."""
        if seed is None and self._next_seed is not None:
            seed = self._next_seed
        self._next_seed = None
        super().reset(seed=seed, options=options)
        return seed

    def _setup_spaces(self, state_dim: int, action_space: gym.spaces.Box) -> None:
        self.state_space = state_space(state_dim)
        if self.obs_mode == "state":
            self.observation_space = self.state_space
        elif self.obs_mode == "pixels":
            self.observation_space = pixel_space(self.image_size)
        else:
            self.observation_space = gym.spaces.Dict(
                {"state": self.state_space, "pixels": pixel_space(self.image_size)}
            )
        self.action_space = action_space

    def _observe(self, state: np.ndarray) -> Any:
        """Turn the state vector into an observation of the configured mode."""
        if self.obs_mode == "state":
            return state
        frame = self.observation_frame()
        if self.obs_mode == "pixels":
            return frame
        return {"state": state, "pixels": frame}

    def render(self) -> np.ndarray:
        return self.render_frame(self.image_size, self.image_size)

    def observation_frame(self) -> np.ndarray:
        """The frame of a pixel observation (``render()`` unless a task hides its goal marks)."""
        return self.render()

    def render_frame(self, width: int, height: int, markers: list | None = None) -> np.ndarray:
        """An ``height x width x 3`` uint8 camera frame of the current state, with optional
        marker spheres ``(xyz, rgba, radius)`` drawn into the scene."""
        raise NotImplementedError

    def safe_action(self, state: np.ndarray) -> np.ndarray:
        """The task's declared safe fallback, in the agent's [-1, 1] action space, as a function of
        the state observation only: what an agent does when no plan is predicted to respect its
        guardrails. Default: no actuation (zeros); tasks override it (e.g. a brake)."""
        return np.zeros(self.action_space.shape, dtype=np.float32)

    def play_action(self, rng: np.random.Generator) -> np.ndarray | None:
        """An action in [-1, 1] from the task's scripted *play* policy: goal-blind exploration that
        interacts with the scene (OGBench's play datasets are of this kind), for tasks where random
        actions rarely do (e.g. a pusher that seldom touches its block). None: the task has none."""
        return None

    def goal_observation(self) -> Any:
        """The observation the agent would receive at the goal (goal-conditioned tasks)."""
        raise NotImplementedError(f"{type(self).__name__} is not goal-conditioned")
