"""Running landmark predictors over labelled face crops, and making detectors' points
comparable with the labels.

A predictor maps one crop to K points (or None when it finds no face). The learned network
sees the crop resized to its input; a detector sees it padded (a tight crop leaves a detector
no context) and enlarged, and its face nearest the crop's centre is taken. Detectors place
their points by their own conventions (dlib's nose is lower, eye centres differ by a few
pixels), so the fair comparison also reports each predictor after a mean per-point offset,
in inter-ocular units, fitted on other labelled faces (the training list) than those scored.
"""
from __future__ import annotations

from typing import Callable, Sequence

import cv2
import numpy as np

from faceforge.core.progress import progress
from faceforge.io.images import load_image
from faceforge.landmarks.geometry import fit_matrix, invert_points
from faceforge.landmarks.labels import LandmarkSample

Predictor = Callable[[np.ndarray], "np.ndarray | None"]


def network_predictor(landmarker) -> Predictor:
    """The landmark network on the whole crop (resized to its input, mapped back)."""
    size = landmarker.size

    def predict(crop: np.ndarray) -> np.ndarray:
        m = fit_matrix(crop.shape[1], crop.shape[0], size)
        x = cv2.warpAffine(crop, m, (size, size), flags=cv2.INTER_LINEAR)
        pts, _ = landmarker.predict_crops(x[None])
        return invert_points(pts[0], m)
    return predict


def detector_predictor(detector, pad: float = 0.5, upscale: float = 4.0) -> Predictor:
    """A detector's five points on the crop: padded by `pad` of its side on each edge
    (replicated border) and scaled by `upscale`, the face nearest the centre kept."""
    def predict(crop: np.ndarray) -> np.ndarray | None:
        h, w = crop.shape[:2]
        py, px = int(round(pad * h)), int(round(pad * w))
        big = cv2.copyMakeBorder(crop, py, py, px, px, cv2.BORDER_REPLICATE)
        big = cv2.resize(big, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_LINEAR)
        faces = detector.detect(big)
        if not faces:
            return None
        centre = np.array(big.shape[1::-1], np.float64) / 2
        f = min(faces, key=lambda f: float(np.linalg.norm(f.landmarks.mean(0) - centre)))
        # cv2.resize maps pixel centres: x_big = (x + 0.5)·upscale − 0.5
        return (f.landmarks + 0.5) / upscale - 0.5 - np.array([px, py])
    return predict


def predict_samples(samples: Sequence[LandmarkSample], predictor: Predictor, what: str = "landmarks",
                    show_progress: bool | None = None) -> np.ndarray:
    """(N, K, 2) predictions in crop pixels; NaN rows where the predictor found no face."""
    k = len(samples[0].points)
    out = np.full((len(samples), k, 2), np.nan)
    for i, s in enumerate(progress(samples, what, enabled=show_progress)):
        p = predictor(load_image(s.path))
        if p is not None:
            out[i] = p
    return out


def fit_offset(pred: np.ndarray, truth: np.ndarray, eyes: tuple[int, int] = (0, 1)) -> np.ndarray:
    """Per-point mean of (truth − prediction) / inter-ocular distance over the faces that
    were found: the least-squares constant correction, (K, 2)."""
    ok = ~np.isnan(pred).any(axis=(1, 2))
    iod = np.linalg.norm(truth[ok, eyes[0]] - truth[ok, eyes[1]], axis=-1)
    return ((truth[ok] - pred[ok]) / iod[:, None, None]).mean(axis=0)


def apply_offset(pred: np.ndarray, offset: np.ndarray, eyes: tuple[int, int] = (0, 1)) -> np.ndarray:
    """The correction scaled by each prediction's own eye distance (the labels are unknown
    where it is applied)."""
    iod = np.linalg.norm(pred[:, eyes[0]] - pred[:, eyes[1]], axis=-1)
    return pred + offset[None] * iod[:, None, None]
