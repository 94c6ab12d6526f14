"""dlib's HOG detector and 5-point shape predictor (the face_recognition pipeline).

dlib's five points are eye corners and the base of the nose; the standard five points are
derived from them (eye centres measured, nose tip and mouth corners placed by the chip
template), and the native points are kept for dlib's own chip alignment.
"""
from __future__ import annotations

import numpy as np

from faceforge.core.extras import require
from faceforge.core.resources import package_file
from faceforge.vision.align import DLIB_CHIP_TEMPLATE_150, _DLIB_5PT_MEAN, umeyama_similarity
from faceforge.vision.detectors.base import Detector, register_detector
from faceforge.vision.face import Face


def dlib_model_path(filename: str) -> str:
    return package_file("face_recognition_models", "models", filename)


def standard_from_dlib5(native: np.ndarray) -> np.ndarray:
    """Five standard points from dlib's five (0,1: image-right eye corners; 2,3: image-left
    eye corners; 4: nose base)."""
    native = np.asarray(native, dtype=np.float64)
    chip = (0.25 + _DLIB_5PT_MEAN) / 1.5 * 150.0
    m = umeyama_similarity(chip, native)  # chip frame -> image
    placed = DLIB_CHIP_TEMPLATE_150.astype(np.float64) @ m[:, :2].T + m[:, 2]
    placed[0] = native[2:4].mean(0)
    placed[1] = native[0:2].mean(0)
    return placed.astype(np.float32)


@register_detector("dlib")
class DlibHogDetector(Detector):
    """HOG + linear SVM detector; `upsample` doubles the image that many times first."""

    def __init__(self, upsample: int = 1, score_threshold: float = -0.5, **kw) -> None:
        super().__init__(score_threshold=score_threshold, **kw)
        dlib = require("dlib", "dlib", "the dlib detector")
        self.upsample = int(upsample)
        self._det = dlib.get_frontal_face_detector()
        self._sp = dlib.shape_predictor(dlib_model_path("shape_predictor_5_face_landmarks.dat"))
        self._rect = dlib.rectangle

    def _detect(self, image: np.ndarray) -> list[Face]:
        rects, scores, _ = self._det.run(image, self.upsample, self.score_threshold)
        return [self.face_from_rect(image, r, s) for r, s in zip(rects, scores)]

    def face_from_rect(self, image: np.ndarray, rect, score: float = 0.0) -> Face:
        shape = self._sp(image, rect)
        native = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
        return Face(box=np.array([rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1], dtype=np.float32),
                    score=float(score), landmarks=standard_from_dlib5(native), detector=self.name,
                    native_landmarks=native)

    def landmarks_for_box(self, image: np.ndarray, box: np.ndarray) -> Face:
        """Run only the shape predictor in a given box (for images with no detection)."""
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        return self.face_from_rect(image, self._rect(x1, y1, x2 - 1, y2 - 1), 0.0)
