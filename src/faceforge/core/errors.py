"""Exception types. Every error a user can cause is a FaceForgeError that names the file."""
from __future__ import annotations

from pathlib import Path


class FaceForgeError(Exception):
    """Base class: an error caused by input or configuration, with a readable message."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        from faceforge.core.files import path_text  # files imports this module
        self.path = None if path is None else path_text(path)  # a name that is not UTF-8 still prints
        super().__init__(f"{self.path}: {message}" if self.path else message)
        self.reason = message


class ImageReadError(FaceForgeError):
    """The file is missing, empty, truncated, corrupt or not an image."""


class FileAccessError(ImageReadError):
    """The file could not be opened or read (missing, permission denied, not a regular file,
    an I/O error). Unlike a corrupt image this can change while the file stays the same, so
    resumable commands try such files again on a rerun."""


class ImageTooLargeError(ImageReadError):
    """The image's declared dimensions exceed a limit (checked before decoding)."""


class NoFaceError(FaceForgeError):
    """The image was read but no face was found in it."""


class ModelLoadError(FaceForgeError):
    """Weights are missing, corrupt or do not match the architecture."""


class OutputExistsError(FaceForgeError):
    """The output already exists and is not this command's to extend or replace."""


class MissingDependencyError(FaceForgeError):
    """A feature needs a package from an optional extra that is not installed; the message
    says which `pip install 'faceforge[extra]'` brings it."""

    def __init__(self, feature: str, package: str, extra: str, detail: str = "") -> None:
        super().__init__(f"{feature} needs {package}: pip install 'faceforge[{extra}]'"
                         + (f" ({detail})" if detail else ""))
        self.package, self.extra = package, extra
