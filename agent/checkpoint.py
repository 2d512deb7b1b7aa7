"""Checkpoints: a directory with ``weights.safetensors`` (flat tensor names) and ``config.json``.

Saving is atomic: both files are written and fsynced in a hidden temporary directory next to the
target, which is then renamed into place. A crash mid-save leaves at most a stray ``.NAME.tmp-*``
directory, never a half-written checkpoint, and an existing good checkpoint is only ever replaced
by a complete one. Loading never unpickles anything: tensors come from ``safetensors`` and the
config from JSON, both validated (format tag, version, kind) before use.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

FORMAT = "oda-checkpoint"
VERSION = 1
WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"
_RESERVED = ("format", "version", "kind")
_STEP_DIR = re.compile(r"^step_(\d{8,})$")


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    """The conventional checkpoint path ``<run_dir>/step_XXXXXXXX`` for a training step."""
    return Path(run_dir) / f"step_{int(step):08d}"


def _to_tensor(name: str, value: Any) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"checkpoint tensor {name!r}: expected a torch.Tensor or numpy array, "
                         f"got {type(value).__name__}")
    return value.detach().cpu().contiguous()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux ``renameat2(RENAME_EXCHANGE)``; False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return rc == 0


def save_checkpoint(path: str | Path, tensors: dict[str, Any], config: dict, *, kind: str) -> Path:
    """Write a checkpoint directory atomically and return its path.

    ``tensors`` maps flat names to torch tensors or numpy arrays (e.g. a replay ``state_dict``);
    ``config`` must be JSON-serialisable and must not use the reserved keys format/version/kind.
    """
    path = Path(path)
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"checkpoint kind must be a non-empty string, got {kind!r}")
    if not isinstance(config, dict):
        raise ValueError(f"checkpoint config must be a dict, got {type(config).__name__}")
    clash = [k for k in _RESERVED if k in config]
    if clash:
        raise ValueError(f"checkpoint config uses reserved key(s) {clash}")
    try:
        text = json.dumps({"format": FORMAT, "version": VERSION, "kind": kind, **config}, indent=2, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint config is not JSON-serialisable: {exc}") from exc
    if not isinstance(tensors, dict):
        raise ValueError(f"checkpoint tensors must be a dict, got {type(tensors).__name__}")
    if path.exists() and not path.is_dir():
        raise ValueError(f"cannot save checkpoint to {path}: it exists and is not a directory")
    path.parent.mkdir(parents=True, exist_ok=True)

    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        weights = {str(name): _to_tensor(str(name), value) for name, value in tensors.items()}
        (tmp / CONFIG_FILE).write_text(text + "\n", encoding="utf-8")
        save_file(weights, str(tmp / WEIGHTS_FILE))
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            _fsync(tmp / name)
        _fsync(tmp)
        if not path.exists():
            os.rename(tmp, path)
        elif _exchange(tmp, path):
            shutil.rmtree(tmp)  # tmp now holds the old checkpoint
        else:
            # Portable fallback: a brief window where the old checkpoint sits at the backup name.
            backup = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.rename(path, backup / "ckpt")
            os.rename(tmp, path)
            shutil.rmtree(backup)
        _fsync(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_checkpoint(path: str | Path, *, kind: str, device: str | torch.device = "cpu"
                    ) -> tuple[dict[str, torch.Tensor], dict]:
    """Load and validate a checkpoint directory; returns ``(tensors, config)``, config without format/version/kind."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not path.is_dir():
        raise ValueError(f"not an oda checkpoint: {path} is a file, expected a directory with "
                         f"{CONFIG_FILE} and {WEIGHTS_FILE}")
    config_path, weights_path = path / CONFIG_FILE, path / WEIGHTS_FILE
    for needed in (config_path, weights_path):
        if not needed.is_file():
            raise FileNotFoundError(f"incomplete checkpoint {path}: missing {needed}")
    try:
        meta = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"corrupt checkpoint {path}: {CONFIG_FILE} is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"not an oda checkpoint: {config_path} has format {found!r}, expected {FORMAT!r}")
    if meta.get("version") != VERSION:
        raise ValueError(f"foreign checkpoint version in {config_path}: found {meta.get('version')!r}, "
                         f"this code reads version {VERSION}")
    if meta.get("kind") != kind:
        raise ValueError(f"foreign checkpoint kind in {config_path}: found {meta.get('kind')!r}, expected {kind!r}")
    try:
        tensors = load_file(str(weights_path), device=str(device))
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise ValueError(f"corrupt checkpoint {path}: {WEIGHTS_FILE} is not a valid safetensors file ({exc})") from exc
    config = {k: v for k, v in meta.items() if k not in _RESERVED}
    return tensors, config


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The complete ``step_XXXXXXXX`` checkpoint with the highest step in ``run_dir``, or None."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    best: tuple[int, Path] | None = None
    for child in run_dir.iterdir():
        match = _STEP_DIR.match(child.name)
        if not match or not (child / CONFIG_FILE).is_file() or not (child / WEIGHTS_FILE).is_file():
            continue
        step = int(match.group(1))
        if best is None or step > best[0]:
            best = (step, child)
    return None if best is None else best[1]


def checkpoint_or_latest(path: str | Path) -> Path:
    """``path`` itself when it is a checkpoint; a run directory's newest checkpoint when it is one (what
    ``oda eval`` and the audits accept); else ``path`` unchanged, for the loader to report."""
    path = Path(path)
    if not (path / CONFIG_FILE).exists():
        return latest_checkpoint(path) or path
    return path
