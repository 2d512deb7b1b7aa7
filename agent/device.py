"""Device selection and seeding: the device is always chosen by argument, never hard-coded."""

from __future__ import annotations

import random

import numpy as np
import torch


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """Turn a device spec into a ``torch.device``.

    ``"auto"`` -> ``cuda`` when available, else ``cpu``; ``"cpu"``, ``"cuda"`` and ``"cuda:N"`` are
    taken literally, but a CUDA request on a machine without CUDA (or a missing index) raises a
    ValueError instead of failing later inside the first tensor operation.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    if not isinstance(spec, str):
        raise ValueError(f"device must be a string such as 'auto', 'cpu' or 'cuda:0', got {spec!r}")
    text = spec.strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {spec!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'") from exc
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ValueError(f"unsupported device {spec!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if not torch.cuda.is_available():
        raise ValueError(f"device {spec!r} requested but CUDA is not available on this machine (use 'auto' or 'cpu')")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise ValueError(f"device {spec!r} requested but only {count} CUDA device(s) are visible")
    return device


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global RNG and torch (CPU and all CUDA devices)."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def flush_denormals() -> bool:
    """Make the CPU treat subnormal floats as zero (process-wide); True where the CPU supports it.

    A guard for long CPU runs: values that decay into the subnormal range (below 1.2e-38 in
    float32: Adam moments of idle weights, far tails of softmax weights) send x86 arithmetic down
    a slow path. Flushing them changes no result that matters (they are 0 to 38 digits). On the
    runs measured so far it made no measurable difference (BENCHMARKS.md, reacher-easy section).
    """
    return bool(torch.set_flush_denormal(True))
