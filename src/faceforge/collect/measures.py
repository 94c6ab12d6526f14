"""What collection judges each face by, besides its embedding: sharpness and head pose.

Sharpness is the variance of the Laplacian of the grey aligned crop: edges give large
second derivatives, blur removes them (a motion-blurred or out-of-focus face scores a
fraction of a sharp one; the collecting reference drops faces at or below 50-75).

Pose comes from the five landmarks alone, by fitting a generic 3-d face (eye centres, nose
tip, mouth corners, in units of the inter-ocular distance, the nose 0.4 in front of the eye
plane) under scaled orthographic projection: the 2×3 projection that best maps the model's
centred points onto the image's (least squares) is made orthonormal, its rows are the first
two rows of the head's rotation, and yaw and pitch are read off them. Yaw is positive when
the face turns towards the image's left (its nose moves left of the eyes' midline), pitch
is positive when the face tilts down. Accurate to a few degrees up to ~45°; beyond that five
points say little.
"""
from __future__ import annotations

import cv2
import numpy as np

from faceforge.core.errors import FaceForgeError

# x to the image's right, y down, z away from the camera (the nose tip is nearer: negative z)
FACE_MODEL_3D = np.array([[-0.5, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.55, -0.4],
                          [-0.42, 1.05, -0.1], [0.42, 1.05, -0.1]])


def blur_score(crop: np.ndarray) -> float:
    """Variance of the Laplacian of the grey crop (higher is sharper)."""
    if crop.ndim != 3 or crop.shape[2] != 3:
        raise FaceForgeError(f"expected an H×W×3 crop, got shape {crop.shape}")
    return float(cv2.Laplacian(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def head_pose(landmarks: np.ndarray) -> tuple[float, float]:
    """(yaw, pitch) in degrees from five points (left eye, right eye, nose, left and right
    mouth corner, image coordinates)."""
    p = np.asarray(landmarks, np.float64).reshape(5, 2)
    if not np.isfinite(p).all():
        raise FaceForgeError("landmarks are not finite")
    model = FACE_MODEL_3D - FACE_MODEL_3D.mean(axis=0)
    m, *_ = np.linalg.lstsq(model, p - p.mean(axis=0), rcond=None)  # (3, 2): image ≈ model @ m
    r1, r2 = m[:, 0], m[:, 1]
    if np.linalg.norm(r1) < 1e-9:
        raise FaceForgeError("landmarks are degenerate (all in one place)")
    r1 = r1 / np.linalg.norm(r1)
    r2 = r2 - (r2 @ r1) * r1
    r2 = r2 / max(np.linalg.norm(r2), 1e-12)
    # rotation = pitch(x axis) · yaw(y axis): first row (cos a, 0, sin a), second row
    # (sin b sin a, cos b, −sin b cos a), so |sin b| is the length of the second row's x, z part
    yaw = np.degrees(np.arctan2(r1[2], r1[0]))
    pitch = np.degrees(np.arctan2(np.copysign(np.hypot(r2[0], r2[2]), -r2[2]), r2[1]))
    return float(yaw), float(pitch)


def rotated_model_points(yaw: float, pitch: float = 0.0, scale: float = 60.0, centre=(100.0, 100.0)) -> np.ndarray:
    """The five model points seen under a head rotation (yaw about the vertical axis, then
    pitch about the horizontal one), orthographically projected: a pose with a known answer."""
    a, b = np.radians(yaw), np.radians(pitch)
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    pts = (rx @ ry @ FACE_MODEL_3D.T).T
    return (scale * pts[:, :2] + np.asarray(centre)).astype(np.float32)
