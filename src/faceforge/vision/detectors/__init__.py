"""Face detectors behind one registry: create_detector(name), list_detectors()."""
from faceforge.vision.detectors.base import (
    Detector,
    create_detector,
    list_detectors,
    register_detector,
)

# Importing the modules registers them.
from faceforge.vision.detectors import yunet as _yunet  # noqa: F401,E402
from faceforge.vision.detectors import dlib_hog as _dlib_hog  # noqa: F401,E402
from faceforge.vision.detectors import mtcnn as _mtcnn  # noqa: F401,E402

__all__ = ["Detector", "create_detector", "list_detectors", "register_detector"]
