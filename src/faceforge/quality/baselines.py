"""Baseline quality measures, to compare the learnt estimator against (higher = better).

Each takes what it needs (detections, landmarks, aligned crops, embeddings) and returns one
value per face. SER-FIQ (Terhörst et al., 2020) runs the embedding layer many times with
random dropout on its input and calls a face good when the stochastic embeddings agree.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn

from faceforge.core.errors import FaceForgeError

BASELINES = ("detector_score", "face_size", "blur", "pose", "embedding_norm", "serfiq")


def _landmarks(landmarks: np.ndarray) -> np.ndarray:
    p = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
    return p


def face_size(landmarks: np.ndarray) -> np.ndarray:
    """Inter-ocular distance in pixels: resolution of the face in the original image, less
    sensitive to how loosely a detector draws its box."""
    p = _landmarks(landmarks)
    return np.linalg.norm(p[:, 1] - p[:, 0], axis=1)


def pose_frontalness(landmarks: np.ndarray) -> np.ndarray:
    """−(|yaw| + |pitch − typical| + |roll|) from five points, each a dimensionless ratio:
    yaw = horizontal offset of the nose from the eye midpoint over the eye distance, pitch =
    where the nose sits between eye line and mouth line (≈ 0.5 when level, the LFW median), roll =
    eye-line angle in radians."""
    p = _landmarks(landmarks)
    le, re, nose, lm, rm = (p[:, i] for i in range(5))
    eyes, mouth = (le + re) / 2, (lm + rm) / 2
    d_eye = np.maximum(np.linalg.norm(re - le, axis=1), 1e-6)
    yaw = (nose[:, 0] - eyes[:, 0]) / d_eye
    pitch = (nose[:, 1] - eyes[:, 1]) / np.maximum(mouth[:, 1] - eyes[:, 1], 1e-6)
    roll = np.arctan2(re[:, 1] - le[:, 1], re[:, 0] - le[:, 0])
    return -(np.abs(yaw) + np.abs(pitch - 0.5) + np.abs(roll))


def laplacian_sharpness(crops: np.ndarray) -> np.ndarray:
    """Variance of the Laplacian of the grey aligned crop (the usual focus measure)."""
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[3] != 3:
        raise FaceForgeError(f"expected N×H×W×3 crops, got {crops.shape}")
    return np.array([cv2.Laplacian(cv2.cvtColor(c, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var() for c in crops])


def embedding_norm(raw_embeddings: np.ndarray) -> np.ndarray:
    """‖e‖ of the unnormalised embedding (margin-trained networks give weak faces short vectors)."""
    return np.linalg.norm(np.asarray(raw_embeddings, dtype=np.float64), axis=1)


@torch.no_grad()
def serfiq(layer: nn.Linear, layer_inputs: torch.Tensor, passes: int = 100, p: float = 0.5,
           seed: int = 0) -> np.ndarray:
    """SER-FIQ on the embedding layer: `passes` dropout masks on its input, the L2-normalised
    outputs compared pairwise; quality = 2·sigmoid(−mean Euclidean distance) ∈ (0, 1]."""
    if passes < 2:
        raise FaceForgeError("SER-FIQ needs at least two stochastic passes")
    x = layer_inputs.detach().float().cpu()
    w = layer.weight.detach().float().cpu()
    b = None if layer.bias is None else layer.bias.detach().float().cpu()
    g = torch.Generator().manual_seed(seed)
    out = np.empty(len(x))
    iu = torch.triu_indices(passes, passes, offset=1)
    for i in range(len(x)):
        masks = (torch.rand(passes, x.shape[1], generator=g) >= p).float() / (1 - p)
        e = nn.functional.linear(x[i] * masks, w, b)
        e = nn.functional.normalize(e, dim=1)
        d = torch.cdist(e, e, compute_mode="donot_use_mm_for_euclid_dist")[iu[0], iu[1]]  # exact at 0
        out[i] = float(2 * torch.sigmoid(-d.mean()))
    return out
