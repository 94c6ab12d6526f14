"""Regression targets for the quality estimator: how close each image's embedding
lies to its identity's centre.

Where a trained classification head exists, the centre is the head's weight row for the
class (what the network was pulled towards). Otherwise it is the mean embedding of the
identity's *other* images: including the image in its own centre inflates its label, the
more so the smaller the identity — with two images the mean always sits halfway, so both
would get cos(θ/2) however far apart they are. An identity of one image has no other
images and so no label (NaN); callers drop those rows.
"""
from __future__ import annotations

import numpy as np

from faceforge.core.errors import FaceForgeError
from faceforge.core.vectors import unit_rows


def leave_one_out_labels(embeddings: np.ndarray, identities) -> np.ndarray:
    """cos(e_i, mean of the other embeddings of i's identity), NaN where there is none."""
    e = unit_rows(embeddings, "embeddings")
    if len(e) == 0:
        raise FaceForgeError("no embeddings to label")
    ids = np.asarray(identities)
    if len(ids) != len(e):
        raise FaceForgeError(f"{len(e)} embeddings but {len(ids)} identities")
    _, inv = np.unique(ids, return_inverse=True)
    sums = np.zeros((inv.max() + 1, e.shape[1]))
    np.add.at(sums, inv, e)
    others = sums[inv] - e                       # sum of the other images: same direction as their mean
    norm = np.linalg.norm(others, axis=1)
    labels = np.full(len(e), np.nan)
    ok = (np.bincount(inv)[inv] > 1) & (norm > 1e-9)
    labels[ok] = (others[ok] * e[ok]).sum(axis=1) / norm[ok]
    return labels


def head_labels(embeddings: np.ndarray, classes: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """cos(e_i, W[y_i]): the centre a margin head (softmax, ArcFace, Partial FC) learnt."""
    e = unit_rows(embeddings, "embeddings")
    w = np.asarray(weight, dtype=np.float64)
    y = np.asarray(classes)
    if w.ndim != 2 or w.shape[1] != e.shape[1]:
        raise FaceForgeError(f"head weight of shape {w.shape} does not fit {e.shape[1]}-d embeddings")
    if len(y) != len(e) or y.min() < 0 or y.max() >= len(w):
        raise FaceForgeError(f"class indices must be one per embedding and within 0..{len(w) - 1}")
    return (e * unit_rows(w, "head weight")[y]).sum(axis=1)
