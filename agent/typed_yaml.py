"""Typed YAML: a strict SafeLoader and a builder of nested dataclasses that names the bad key.

Used by launch files (``agent.launch``); kept apart so that the launch schema reads on its own.
``Loader`` is a SafeLoader subclass that (a) rejects duplicate keys and (b) reads ``1e-3`` as a float
(plain PyYAML follows YAML 1.1 and would read it as the string "1e-3").
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable
from typing import Any

import yaml

#: ``check(obj, path, source)``: raises ValueError if a built section's values are out of range
RangeCheck = Callable[[Any, tuple[str, ...], str], None]


class Loader(yaml.SafeLoader):
    """SafeLoader + YAML 1.2 floats (``1e-3``) + duplicate-key detection."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # keys merged in with << may be overridden; only literal repeats are errors
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*\.?[\d_]*(?:[eE][-+]?\d+)|\.\d+(?:[eE][-+]?\d+)?)$"),
    list("-+0123456789."),
)


def dotted(path: tuple[str, ...]) -> str:
    return ".".join(path) or "<top level>"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def check_value(value: Any, tp: Any, path: tuple[str, ...], source: str) -> Any:
    """Check ``value`` against a field annotation (str/int/float/bool, Optional, dict[str, X])."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        (tp,) = [t for t in options if t is not type(None)]
        return check_value(value, tp, path, source)
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"{source}: '{dotted(path)}' must be a list, got {type(value).__name__} {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [check_value(v, item_tp, (*path, str(i)), source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{source}: '{dotted(path)}' must be a mapping, got {type(value).__name__} {value!r}")
        _, val_tp = typing.get_args(tp)
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{source}: keys of '{dotted(path)}' must be strings, got {k!r}")
            out[k] = v if val_tp is Any else check_value(v, val_tp, (*path, k), source)
        return out
    ok = (
        (tp is int and isinstance(value, int) and not isinstance(value, bool))
        or (tp is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (tp in (str, bool) and isinstance(value, tp))
    )
    if not ok:
        raise ValueError(f"{source}: '{dotted(path)}' must be {_type_name(tp)}, "
                         f"got {type(value).__name__} {value!r}")
    return float(value) if tp is float else value


def build(cls: type, data: Any, path: tuple[str, ...], source: str, check: RangeCheck) -> Any:
    """``cls`` (a dataclass) from a mapping: unknown or missing keys and wrong types are ValueErrors naming
    the dotted key and ``source``; ``check(obj, path, source)`` then checks each built section's ranges."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: '{dotted(path)}' must be a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise ValueError(f"{source}: unknown key '{dotted((*path, str(key)))}' "
                             f"(valid keys here: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if name not in data:
            if required:
                raise ValueError(f"{source}: missing required key '{dotted((*path, name))}'")
            continue
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = build(tp, data[name], (*path, name), source, check)
        else:
            kwargs[name] = check_value(data[name], tp, (*path, name), source)
    obj = cls(**kwargs)
    check(obj, path, source)
    return obj
