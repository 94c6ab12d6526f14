"""Explicit device selection: 'auto' picks CUDA when present, otherwise CPU. torch is
imported on the first call, so that importing faceforge (and `faceforge --help`) stays light."""
from __future__ import annotations

from typing import TYPE_CHECKING

from faceforge.core.errors import FaceForgeError

if TYPE_CHECKING:
    import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    import torch
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
