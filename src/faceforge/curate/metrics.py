"""Clustering and filtering metrics against known labels.

A predicted label of −1 (noise, isolated) counts as a cluster of its own for each such item:
leaving a face unclustered must not earn credit for pairing it with every other leftover.
All counts come from the sparse contingency table, so a million items cost a sort, not a
million-squared pair loop.
"""
from __future__ import annotations

import numpy as np

from faceforge.core.errors import FaceForgeError
from faceforge.core.extras import require


def _codes(labels, name: str) -> np.ndarray:
    a = np.asarray(labels)
    if a.ndim != 1:
        raise FaceForgeError(f"{name} labels must be one-dimensional, got shape {a.shape}")
    return np.unique(a, return_inverse=True)[1].astype(np.int64)


def _pred_codes(pred) -> np.ndarray:
    """Cluster codes with every −1 turned into its own singleton."""
    p = np.asarray(pred)
    codes = _codes(p, "predicted")
    noise = p == -1 if np.issubdtype(p.dtype, np.number) else np.zeros(len(p), bool)
    if noise.any():
        codes = codes.copy()
        codes[noise] = codes.max() + 1 + np.arange(int(noise.sum()))
    return codes


def _table(true, pred) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """True code and predicted code per item; the count of each nonzero (true, pred) cell and
    each item's cell."""
    t, p = _codes(true, "true"), _pred_codes(pred)
    if len(t) != len(p):
        raise FaceForgeError(f"{len(t)} true labels but {len(p)} predicted")
    if len(t) == 0:
        raise FaceForgeError("no items to score")
    _, inverse, counts = np.unique(t * (p.max() + 1) + p, return_inverse=True, return_counts=True)
    return t, p, counts, inverse.reshape(-1)


def _prf(p: float, r: float) -> dict[str, float]:
    return {"precision": p, "recall": r, "f": 0.0 if p + r == 0 else 2 * p * r / (p + r)}


def pairwise_prf(true, pred) -> dict[str, float]:
    """Over all item pairs: precision = same-cluster pairs that share a true label / same-cluster
    pairs; recall = of true same-label pairs, those put together. No pair at all scores 1."""
    t, p, counts, _ = _table(true, pred)
    pairs = lambda n: (n * (n - 1) // 2).sum()  # noqa: E731
    tp = pairs(counts)
    pred_pairs, true_pairs = pairs(np.bincount(p)), pairs(np.bincount(t))
    return _prf(float(tp / pred_pairs) if pred_pairs else 1.0, float(tp / true_pairs) if true_pairs else 1.0)


def bcubed_prf(true, pred) -> dict[str, float]:
    """Per item: precision = share of its cluster with its true label, recall = share of its
    true class in its cluster; both averaged over items (Bagga & Baldwin)."""
    t, p, counts, inverse = _table(true, pred)
    n_tp = counts[inverse]
    return _prf(float(np.mean(n_tp / np.bincount(p)[p])), float(np.mean(n_tp / np.bincount(t)[t])))


def nmi(true, pred) -> float:
    """Normalised mutual information (arithmetic mean normalisation, sklearn's default)."""
    sk_metrics = require("sklearn.metrics", "curate", "NMI (scoring clusters against identities)")
    t, p = _codes(true, "true"), _pred_codes(pred)
    if len(t) != len(p):
        raise FaceForgeError(f"{len(t)} true labels but {len(p)} predicted")
    return float(sk_metrics.normalized_mutual_info_score(t, p))


def clustering_report(true, pred) -> dict:
    """Pairwise, BCubed and NMI with the cluster counts, one JSON-ready dict."""
    p = _pred_codes(pred)
    sizes = np.bincount(p)
    return {"items": len(p), "true_classes": int(len(np.unique(np.asarray(true)))),
            "clusters": int((sizes > 1).sum()), "singletons": int((sizes == 1).sum()),
            "pairwise": pairwise_prf(true, pred), "bcubed": bcubed_prf(true, pred), "nmi": nmi(true, pred)}


def noise_prf(flagged, is_noise) -> dict[str, float]:
    """How well the images flagged as noise match the real noise (precision, recall, F1), and
    the purity of what is kept (share of kept images that are genuine)."""
    f, y = np.asarray(flagged, bool), np.asarray(is_noise, bool)
    if f.shape != y.shape or f.ndim != 1:
        raise FaceForgeError(f"flagged {f.shape} and truth {y.shape} must be equal 1-d shapes")
    tp = int((f & y).sum())
    p = tp / f.sum() if f.sum() else 1.0
    r = tp / y.sum() if y.sum() else 1.0
    kept = ~f
    return {"precision": float(p), "recall": float(r), "f1": _prf(float(p), float(r))["f"],
            "kept_purity": float((kept & ~y).sum() / kept.sum()) if kept.sum() else 1.0,
            "flagged": int(f.sum()), "noise": int(y.sum()), "kept": int(kept.sum())}
