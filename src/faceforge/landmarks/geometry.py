"""The similarity transforms that bring a face crop to a landmark network's input, and
points through them (OpenCV's convention: integer coordinates are pixel centres)."""
from __future__ import annotations

import math

import cv2
import numpy as np


def fit_matrix(width: int, height: int, size: int, angle_deg: float = 0.0, scale: float = 1.0,
               shift: tuple[float, float] = (0.0, 0.0), flip: bool = False) -> np.ndarray:
    """2×3 matrix (OpenCV's convention: integer coordinates are pixel centres) that resizes a
    width × height crop to size × size, then rotates by angle and scales about the centre,
    shifts by `shift` output pixels, and mirrors left-right if asked."""
    c = (size - 1) / 2.0
    s0 = size / max(width, height)  # aspect kept; a non-square crop is centred
    pre = np.array([[s0, 0, c - s0 * (width - 1) / 2.0], [0, s0, c - s0 * (height - 1) / 2.0], [0, 0, 1]])
    a = math.radians(angle_deg)
    rot = np.array([[scale * math.cos(a), -scale * math.sin(a), 0], [scale * math.sin(a), scale * math.cos(a), 0],
                    [0, 0, 1]])
    about = np.array([[1, 0, c + shift[0]], [0, 1, c + shift[1]], [0, 0, 1]]) @ rot @ \
        np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1]])
    m = about @ pre
    if flip:
        m = np.array([[-1, 0, size - 1], [0, 1, 0], [0, 0, 1]]) @ m
    return m[:2].astype(np.float64)


def apply_matrix(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    return (points @ m[:, :2].T + m[:, 2]).astype(np.float32)


def invert_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Points in the warped image (given m, image → warped) back in the original image."""
    return apply_matrix(points, cv2.invertAffineTransform(m))
