"""Explicit device selection: 'auto' picks CUDA when present, otherwise CPU. torch is
imported on the first call, so that importing faceforge (and `faceforge --help`) stays light."""
from __future__ import annotations

from typing import TYPE_CHECKING

from faceforge.core.errors import FaceForgeError

if TYPE_CHECKING:
    import torch


def launcher_rank() -> tuple[int, int]:
    """(rank, world size) that a launcher (torchrun, or any that sets RANK and WORLD_SIZE)
    gave this process; (0, 1) when there is none."""
    import os
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise FaceForgeError(f"RANK={os.environ.get('RANK')!r} and WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} "
                             "must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise FaceForgeError(f"RANK={rank} does not fit WORLD_SIZE={world} (0 <= RANK < WORLD_SIZE)")
    return rank, world


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' is this process's GPU (cuda:LOCAL_RANK under a launcher) when CUDA is present."""
    import os

    import torch
    if isinstance(device, torch.device):
        return device
    if device is None or device == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        local = int(os.environ.get("LOCAL_RANK", "0") or 0)
        return torch.device("cuda", local % torch.cuda.device_count())
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise FaceForgeError(f"unknown device {device!r}: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FaceForgeError(f"device {device!r} requested but CUDA is not available")
    return dev
