"""Checkpoints: written atomically, read without unpickling arbitrary objects."""
from __future__ import annotations

import io
from pathlib import Path

import torch

from faceforge.core.errors import ModelLoadError
from faceforge.core.files import atomic_write_bytes
from faceforge.models.weights import load_state  # noqa: F401  (trainer and export use it from here)


def save_checkpoint(path: str | Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError("checkpoint not found", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadError(f"not a readable checkpoint ({type(exc).__name__}: {str(exc)[:200]})", path) from None


def check_compatible(saved: dict, expected: dict, path: str | Path) -> None:
    """Refuse a checkpoint of another architecture or class count, naming the difference."""
    diffs = [f"{k}: checkpoint has {saved.get(k)!r}, this run has {v!r}"
             for k, v in expected.items() if saved.get(k) != v]
    if diffs:
        raise ModelLoadError("checkpoint does not match this model - " + "; ".join(diffs), path)
