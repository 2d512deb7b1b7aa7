"""One registry of tasks, tagged the dm_control way, mirrored into gymnasium's registry.

Every task is registered under an id ``oda/<Name>-v0``, ``dmc/<domain>-<task>`` or
``gym/<Id>``; after ``import envs`` both ``envs.make(id, ...)`` and ``gymnasium.make(id)``
build it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import gymnasium as gym

from envs.core import OdaEnv


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """What the registry knows about a task before building it."""

    id: str
    family: str
    factory: Callable[..., OdaEnv]
    tags: tuple[str, ...] = ()
    episode_steps: int = 1000  # simulator control steps, before action repeat
    action_repeat: int = 1  # default action repeat of this family
    description: str = ""
    requires: str = ""  # the optional extra that provides it, if any

    def episode_length(self, action_repeat: int | None = None) -> int:
        """Agent decisions per episode for a given action repeat."""
        k = self.action_repeat if action_repeat is None else action_repeat
        return -(-self.episode_steps // k)


_REGISTRY: dict[str, TaskSpec] = {}


def register(spec: TaskSpec) -> TaskSpec:
    if spec.id in _REGISTRY:
        raise ValueError(f"task id {spec.id!r} is registered twice")
    _REGISTRY[spec.id] = spec
    # gymnasium.make(id, **kwargs) routes through envs.make, so both give the same env.
    gym.register(id=spec.id, entry_point="envs.factory:_gymnasium_entry", kwargs={"task_id": spec.id},
                 disable_env_checker=True, order_enforce=False)
    return spec


Factory = Callable[..., OdaEnv]


def register_task(task_id: str, *, family: str = "oda", tags: tuple[str, ...] = (), episode_steps: int = 1000,
                  action_repeat: int = 1, requires: str = "") -> Callable[[Factory], Factory]:
    """Decorator registering an env factory ``f(obs=, image_size=, render_mode=, **kwargs)``."""

    def decorate(factory: Factory) -> Factory:
        doc = (factory.__doc__ or "").strip().splitlines()
        register(TaskSpec(task_id, family, factory, tuple(tags), episode_steps, action_repeat,
                          doc[0] if doc else "", requires))
        return factory

    return decorate


def get_spec(task_id: str) -> TaskSpec:
    try:
        return _REGISTRY[task_id]
    except KeyError:
        close = [k for k in _REGISTRY if task_id.lower() in k.lower() or k.lower() in task_id.lower()]
        hint = f"; did you mean {close[:3]}?" if close else "; `oda envs` lists every id"
        raise KeyError(f"unknown env id {task_id!r}{hint}") from None


def list_specs(family: str | None = None, tag: str | None = None) -> list[TaskSpec]:
    return [s for s in _REGISTRY.values()
            if (family is None or s.family == family) and (tag is None or tag in s.tags)]

