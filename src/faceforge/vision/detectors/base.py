"""Detector interface and registry."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from faceforge.core.errors import FaceForgeError
from faceforge.core.registry import Registry
from faceforge.vision.face import Face

DETECTORS: "Registry[Detector]" = Registry("detector", modules=(
    "faceforge.vision.detectors.yunet", "faceforge.vision.detectors.dlib_hog", "faceforge.vision.detectors.mtcnn",
    "faceforge.vision.detectors.whole"), name_attr="name")
DEFAULT_DETECTOR = "yunet"  # what "auto" means for face models (body models: "whole-image")
register_detector = DETECTORS.register


def list_detectors() -> list[str]:
    return DETECTORS.names()


def create_detector(name: str, **kwargs) -> "Detector":
    """A detector by name; "auto" is the default face detector."""
    return DETECTORS.create(DEFAULT_DETECTOR if name == "auto" else name, **kwargs)


def create_face_detector(name: str, **kwargs) -> "Detector":
    """create_detector for work that needs real face landmarks (alignment, landmark models)."""
    det = create_detector(name, **kwargs)
    if not det.has_landmarks:
        raise FaceForgeError(f"detector {det.name!r} finds no face landmarks (it is for body models): use yunet, "
                             "mtcnn or dlib")
    return det


class Detector:
    """Finds faces in RGB uint8 images.

    score_threshold: minimum confidence; min_face_size: minimum box side in pixels;
    largest_only: keep only the largest face of each image; device: where a torch detector
    runs (detectors built on OpenCV or dlib run on the CPU whatever it says).
    """

    name = "base"
    has_landmarks = True  # False: the faces' landmarks are placeholders (whole-image boxes)

    def __init__(self, score_threshold: float = 0.5, min_face_size: float = 0.0,
                 largest_only: bool = False, device: str = "auto") -> None:
        self.score_threshold = float(score_threshold)
        self.min_face_size = float(min_face_size)
        self.largest_only = bool(largest_only)

    def _detect(self, image: np.ndarray) -> list[Face]:
        raise NotImplementedError

    def _detect_many(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        return [self._detect(im) for im in images]

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in one image, sorted by area (largest first)."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        for im in images:
            if not (isinstance(im, np.ndarray) and im.ndim == 3 and im.shape[2] == 3 and im.dtype == np.uint8):
                shape = getattr(im, "shape", None)
                raise FaceForgeError(f"detector expects H×W×3 uint8 RGB images, got shape {shape}")
        return [self._filter(faces) for faces in self._detect_many(images)]

    def _filter(self, faces: list[Face]) -> list[Face]:
        faces = [f for f in faces if f.score >= self.score_threshold
                 and min(f.width, f.height) >= self.min_face_size]
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces[:1] if self.largest_only else faces


def central_face(faces: list[Face], image_shape: tuple[int, ...]) -> Face | None:
    """The face whose centre is nearest the image centre, ties broken by size; the usual
    choice for pre-cropped benchmark images (LFW, CelebA) where several faces may show."""
    if not faces:
        return None
    cy, cx = image_shape[0] / 2.0, image_shape[1] / 2.0

    def key(f: Face) -> tuple[float, float]:
        fx, fy = (f.box[0] + f.box[2]) / 2.0, (f.box[1] + f.box[3]) / 2.0
        return (np.hypot(fx - cx, fy - cy) / max(f.width, 1.0), -f.area)

    return min(faces, key=key)
