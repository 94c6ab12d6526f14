"""DBSCAN baselines for per-identity filtering: the reference's fixed setting (cosine, eps 0.3,
min_samples 2) and an eps read off the k-distance elbow instead of hard-coded."""
from __future__ import annotations

import numpy as np

from faceforge.core.errors import FaceForgeError
from faceforge.core.extras import require
from faceforge.core.vectors import unit_rows


def renumber_by_size(labels: np.ndarray) -> np.ndarray:
    """Clusters renumbered 0..k−1 from the largest (ties: lowest first index); −1 stays."""
    labels = np.asarray(labels)
    out = np.full(len(labels), -1, dtype=np.int64)
    ok = labels >= 0
    if not ok.any():
        return out
    _, first, inverse, counts = np.unique(labels[ok], return_index=True, return_inverse=True, return_counts=True)
    rank = np.empty(len(counts), np.int64)
    rank[np.lexsort((first, -counts))] = np.arange(len(counts))  # by size, then first appearance
    out[ok] = rank[inverse.reshape(-1)]
    return out


def dbscan_labels(embeddings: np.ndarray, eps: float = 0.3, min_samples: int = 2) -> np.ndarray:
    """DBSCAN on cosine distance; −1 = noise, clusters numbered by size."""
    sk_cluster = require("sklearn.cluster", "curate", "DBSCAN")
    e = unit_rows(embeddings)
    if len(e) == 0:
        return np.zeros(0, np.int64)
    return renumber_by_size(sk_cluster.DBSCAN(eps=eps, min_samples=min_samples, metric="cosine").fit(e).labels_)


def elbow_eps(embeddings: np.ndarray, k: int | None = None) -> float:
    """k = ⌊0.1·n⌋ (at least 1); each point's mean cosine distance to its k nearest others,
    sorted; the elbow is the point farthest from the chord joining the first and last."""
    e = unit_rows(embeddings)
    n = len(e)
    if n < 3:
        raise FaceForgeError(f"the k-distance elbow needs at least 3 points, got {n}")
    k = max(1, n // 10) if k is None else int(k)
    if not 1 <= k < n:
        raise FaceForgeError(f"k must be in 1..{n - 1}, got {k}")
    d = 1.0 - e @ e.T
    np.fill_diagonal(d, np.inf)
    kdist = np.sort(np.partition(d, k - 1, axis=1)[:, :k], axis=1).mean(axis=1)
    y = np.sort(kdist)
    x = np.arange(n, dtype=np.float64)
    # distance of (x_i, y_i) to the line through the first and last points
    dx, dy = x[-1] - x[0], y[-1] - y[0]
    dist = np.abs(dy * (x - x[0]) - dx * (y - y[0])) / max(np.hypot(dx, dy), 1e-12)
    return float(y[int(np.argmax(dist))])
