"""The "detector" for images that are already crops: one box covering the whole image.

Person re-id works on pedestrian crops (a person detector or a tracker cut them), so a body
model embeds each image whole; this lets the same pipeline, galleries and service take body
images. It gives no landmarks (zeros), so the pipeline skips the landmark check for it.
"""
from __future__ import annotations

import numpy as np

from faceforge.vision.detectors.base import Detector, register_detector
from faceforge.vision.face import Face


@register_detector("whole-image")
class WholeImage(Detector):
    has_landmarks = False

    def _detect(self, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        return [Face(np.array([0, 0, w, h], np.float32), 1.0, np.zeros((5, 2), np.float32), self.name)]
