"""Exception types. Every error a user can cause is a FaceForgeError that names the file."""
from __future__ import annotations

from pathlib import Path


class FaceForgeError(Exception):
    """Base class: an error caused by input or configuration, with a readable message."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)
        self.reason = message


class ImageReadError(FaceForgeError):
    """The file is missing, empty, truncated, corrupt or not an image."""


class NoFaceError(FaceForgeError):
    """The image was read but no face was found in it."""


class ModelLoadError(FaceForgeError):
    """Weights are missing, corrupt or do not match the architecture."""
