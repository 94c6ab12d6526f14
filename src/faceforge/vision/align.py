"""Face alignment: similarity transforms onto fixed templates.

The ArcFace 112×112 template is the input every insightface-style recogniser was trained
on; a wrong template silently costs accuracy, so its coordinates are pinned by tests.
"""
from __future__ import annotations

import cv2
import numpy as np

from faceforge.core.errors import FaceForgeError

ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
     [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)

# Where dlib's 150×150, padding-0.25 face chip puts the five standard points (eye centres,
# nose tip, mouth corners). Fitted by scripts/fit_dlib_chip_template.py on CelebA photos
# (1,415 dlib 5-point chips, YuNet landmarks measured on each, per-point median);
# LFW is kept for evaluation.
DLIB_CHIP_TEMPLATE_150 = np.array(
    [[45.2034, 46.6362], [101.4879, 45.2594], [73.5560, 76.0541],
     [50.1055, 101.4607], [97.9975, 101.0972]], dtype=np.float32)

# dlib's mean-face positions of its own 5-point model (eye corners and the base of the nose),
# as used by dlib::get_face_chip_details, in units of the unpadded chip.
_DLIB_5PT_MEAN = np.array(
    [[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
     [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
     [0.4901123135679, 0.6277975316475]], dtype=np.float64)


def arcface_template(size: int = 112) -> np.ndarray:
    """The ArcFace template for an output of `size` pixels (a multiple of 112 or 128)."""
    if size % 112 == 0:
        return ARCFACE_TEMPLATE_112 * (size / 112.0)
    if size % 128 == 0:
        t = ARCFACE_TEMPLATE_112 * (size / 128.0)
        t[:, 0] += 8.0 * size / 128.0
        return t
    raise FaceForgeError(f"ArcFace template size must be a multiple of 112 or 128, got {size}")


def umeyama_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, shift) mapping src→dst.

    Returns a 2×3 matrix. Umeyama (1991), with the reflection fix.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise FaceForgeError(f"need two matching N×2 point sets (N ≥ 2), got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s_c, d_c = src - mu_s, dst - mu_d
    var_s = (s_c**2).sum() / len(src)
    if var_s <= 1e-12:
        raise FaceForgeError("degenerate landmarks: all points coincide")
    cov = d_c.T @ s_c / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = u @ np.diag(sign) @ vt
    scale = (d * sign).sum() / var_s
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def warp(image: np.ndarray, matrix: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Apply a 2×3 transform with bilinear sampling and a black border."""
    w, h = (size, size) if isinstance(size, int) else size
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def norm_crop(image: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """Align a face onto the ArcFace template (112 or 128 family)."""
    return warp(image, umeyama_similarity(landmarks, arcface_template(size)), size)


def dlib_chip(image: np.ndarray, landmarks: np.ndarray, size: int = 150,
              native_landmarks: np.ndarray | None = None) -> np.ndarray:
    """dlib's face chip (150 px, padding 0.25), the input of dlib's ResNet descriptor.

    With dlib's own five points (eye corners + nose base) this is dlib's
    get_face_chip_details; with the standard five points it uses DLIB_CHIP_TEMPLATE_150.
    """
    if native_landmarks is not None and len(native_landmarks) == 5:
        padding = 0.25
        template = (padding + _DLIB_5PT_MEAN) / (2 * padding + 1) * size
        matrix = umeyama_similarity(native_landmarks, template)
    else:
        matrix = umeyama_similarity(landmarks, DLIB_CHIP_TEMPLATE_150 * (size / 150.0))
    return warp(image, matrix, size)


TEMPLATES = ("arcface", "dlib-chip")


def align_face(image: np.ndarray, landmarks: np.ndarray, template: str = "arcface", size: int = 112,
               native_landmarks: np.ndarray | None = None) -> np.ndarray:
    """Crop a face onto a named template: 'arcface' (norm_crop) or 'dlib-chip'."""
    if template == "arcface":
        return norm_crop(image, landmarks, size)
    if template == "dlib-chip":
        return dlib_chip(image, landmarks, size, native_landmarks)
    raise FaceForgeError(f"unknown alignment template {template!r}; one of {', '.join(TEMPLATES)}")


def landmarks_plausible(landmarks: np.ndarray, frontal: bool = False) -> bool:
    """Reject landmark sets that cannot belong to an upright face: eyes or mouth corners
    swapped, or the vertical order eyes < nose < mouth broken.

    frontal=True adds the rule left-eye x < nose x < right-eye x (the reference's check for
    building aligned training sets). It also rejects real faces turned by more than ~30°,
    whose nose tip projects outside the eyes, so it is not used for recognition.
    """
    p = np.asarray(landmarks, dtype=np.float64)
    if p.shape != (5, 2) or not np.isfinite(p).all():
        return False
    le, re, nose, lm, rm = p
    eye_y = (le[1] + re[1]) / 2
    mouth_y = (lm[1] + rm[1]) / 2
    ok = le[0] < re[0] and lm[0] < rm[0] and eye_y < nose[1] < mouth_y
    if frontal:
        ok = ok and le[0] < nose[0] < re[0]
    return bool(ok)


def landmarks_68_to_5(points: np.ndarray) -> np.ndarray:
    """iBUG 68-point landmarks → the five standard points (0-based indices)."""
    p = np.asarray(points, dtype=np.float32)
    if p.shape != (68, 2):
        raise FaceForgeError(f"expected 68×2 landmarks, got {p.shape}")
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]]).astype(np.float32)
