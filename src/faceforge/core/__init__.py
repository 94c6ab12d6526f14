"""The few things every part of FaceForge needs: errors, devices, files, progress."""
from faceforge.core.errors import (
    FaceForgeError,
    FileAccessError,
    ImageReadError,
    ImageTooLargeError,
    ModelLoadError,
    NoFaceError,
    OutputExistsError,
)
from faceforge.core.device import resolve_device
from faceforge.core.files import atomic_write, atomic_write_bytes, atomic_write_text
from faceforge.core.progress import progress

__all__ = [
    "FaceForgeError",
    "FileAccessError",
    "ImageReadError",
    "ImageTooLargeError",
    "ModelLoadError",
    "NoFaceError",
    "OutputExistsError",
    "resolve_device",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "progress",
]
