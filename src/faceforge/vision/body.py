"""Full-body crops for person re-identification: no detection and no alignment, the whole
image resized into the network's input with its aspect ratio kept.

A pedestrian box is tall and narrow (CUHK03's are about 128 × 30–60 px) while networks take
a fixed H × W (256 × 128 in the strong re-id baselines, 240 × 240 in the re-id reference):
stretching to fit would make thin people fat, so the image is scaled to fit inside and the
rest is filled with a constant grey, centred.
"""
from __future__ import annotations

import cv2
import numpy as np

from faceforge.core.errors import FaceForgeError

FILL = 128  # mid-grey: what the padding adds is far from any person's edge and colour


def letterbox(image: np.ndarray, height: int, width: int, fill: int = FILL) -> np.ndarray:
    """`image` (H×W×3 uint8) scaled by the largest factor that fits height × width, centred,
    the remaining border filled with `fill`."""
    if image.ndim != 3 or image.shape[2] != 3 or not image.shape[0] or not image.shape[1]:
        raise FaceForgeError(f"expected an H×W×3 image, got shape {image.shape}")
    if height < 1 or width < 1:
        raise FaceForgeError(f"input size must be positive, got {height}×{width}")
    h, w = image.shape[:2]
    scale = min(height / h, width / w)
    nh, nw = max(1, min(height, round(h * scale))), max(1, min(width, round(w * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interp)
    out = np.full((height, width, 3), fill, np.uint8)
    y, x = (height - nh) // 2, (width - nw) // 2
    out[y:y + nh, x:x + nw] = resized
    return out
