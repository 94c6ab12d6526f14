"""Loading parameters into a network without unpickling anything untrusted."""
from __future__ import annotations

from pathlib import Path

import torch

from faceforge.core.errors import ModelLoadError


def load_state(module: torch.nn.Module, state: dict, what: str, path: str | Path) -> None:
    """load_state_dict, with a mismatch reported as the file's error (first line of torch's)."""
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelLoadError(f"{what} weights do not fit: {str(exc).splitlines()[0]}", path) from None


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Load a state dict from .safetensors or a .pt/.pth saved with torch.save (tensors only,
    `weights_only=True`; a training checkpoint's `backbone` entry is taken)."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError("weights file not found", path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("backbone", state) if isinstance(state, dict) else state
    except Exception as exc:
        raise ModelLoadError(f"cannot load weights: {type(exc).__name__}: {str(exc)[:200]}", path) from None
    load_state(model, state, "backbone", path)
