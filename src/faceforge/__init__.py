"""FaceForge: face recognition you can train, evaluate and deploy without a lab's compute.

The names below are imported on first use (PEP 562), so `import faceforge` and
`faceforge --help` do not load torch, OpenCV or the models until something needs them."""
from __future__ import annotations

import importlib

from faceforge.core.errors import FaceForgeError, ImageReadError, ModelLoadError, NoFaceError

__version__ = "0.1.0"

_LAZY = {
    "Representation": "faceforge.api", "VerifyResult": "faceforge.api", "find": "faceforge.api",
    "represent": "faceforge.api", "verify": "faceforge.api", "load_image": "faceforge.io.images",
    "Embedder": "faceforge.models.embedders", "create_embedder": "faceforge.models.embedders",
    "list_embedders": "faceforge.models.embedders", "FacePipeline": "faceforge.pipeline",
    "FaceRecord": "faceforge.pipeline", "Skip": "faceforge.pipeline", "Detector": "faceforge.vision.detectors",
    "create_detector": "faceforge.vision.detectors", "list_detectors": "faceforge.vision.detectors",
    "Face": "faceforge.vision.face",
}

__all__ = ["FaceForgeError", "ImageReadError", "ModelLoadError", "NoFaceError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'faceforge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
