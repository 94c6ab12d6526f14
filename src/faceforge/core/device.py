"""Explicit device selection: 'auto' picks CUDA when present, otherwise CPU."""
from __future__ import annotations

import torch

from faceforge.core.errors import FaceForgeError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise FaceForgeError(f"unknown device {device!r}: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FaceForgeError(f"device {device!r} requested but CUDA is not available")
    return dev
