"""The one record every detector returns."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")
"""Fixed landmark order, in image coordinates: 'left' is the image's left (the subject's right)."""


@dataclass
class Face:
    """A detected face.

    box: x1, y1, x2, y2 in pixels; landmarks: 5×2 float32 in LANDMARK_NAMES order;
    native_landmarks: the detector's own points when they differ (dlib's eye corners),
    used by aligners that were built for them.
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray
    detector: str = ""
    native_landmarks: np.ndarray | None = field(default=None, repr=False)

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def to_dict(self) -> dict:
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
            "detector": self.detector,
        }
