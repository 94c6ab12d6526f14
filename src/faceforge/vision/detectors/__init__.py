"""Face detectors behind one registry: create_detector(name), list_detectors()."""
from faceforge.vision.detectors.base import (
    DETECTORS,
    Detector,
    create_detector,
    create_face_detector,
    list_detectors,
    register_detector,
)

__all__ = ["DETECTORS", "Detector", "create_detector", "create_face_detector", "list_detectors", "register_detector"]
