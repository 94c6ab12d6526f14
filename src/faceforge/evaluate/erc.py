"""Error-versus-reject curves for quality scores.

A pair's quality is the lower of its two images'. The decision threshold is fixed once, at
the target FMR on all pairs (accept if score > t, as in tpr_at_fpr); then the lowest-quality
fraction p of pairs is discarded (exactly ⌊N·p⌋ pairs: the lowest qualities, equal
qualities in pair order, the earlier pair first) and the FNMR of what is left is measured. A quality measure is useful when the curve falls fast; the area
under it (pAUC, up to 20 % and 100 % rejected) summarises that, lower is better.
"""
from __future__ import annotations

import warnings

import numpy as np

from faceforge.core.errors import FaceForgeError
from faceforge.evaluate.verification import tpr_at_fpr, trapezoid


def fmr_threshold(scores: np.ndarray, same: np.ndarray, fmr: float) -> float:
    """The threshold tpr_at_fpr uses at this FMR; an error where it is not measurable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        thr = tpr_at_fpr(scores, same, (fmr,))[f"{fmr:g}"]["threshold"]
    if np.isnan(thr):
        raise FaceForgeError(f"FMR {fmr:g} is below 1/{int((~np.asarray(same, bool)).sum())} negatives: not measurable")
    return thr


def error_vs_reject(scores: np.ndarray, same: np.ndarray, quality_a: np.ndarray, quality_b: np.ndarray,
                    fmrs=(1e-3, 1e-4), fractions: np.ndarray | None = None) -> dict:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(same).astype(bool)
    q = np.minimum(np.asarray(quality_a, dtype=np.float64), np.asarray(quality_b, dtype=np.float64))
    if not (len(s) == len(y) == len(q)):
        raise FaceForgeError("scores, labels and qualities must have one entry per pair")
    if not y.any():
        raise FaceForgeError("error-versus-reject needs genuine pairs")
    fractions = np.round(np.arange(0, 0.951, 0.01), 4) if fractions is None else np.asarray(fractions, float)
    position = np.empty(len(q), np.int64)  # each pair's place in the rejection order
    position[np.argsort(q, kind="stable")] = np.arange(len(q))
    out = {"fractions": fractions.tolist(), "curves": {}}
    for fmr in fmrs:
        thr = fmr_threshold(s, y, fmr)
        fnmr = []
        for p in fractions:
            keep = (position >= int(np.floor(len(q) * p))) & y
            fnmr.append(float(np.mean(s[keep] <= thr)) if keep.any() else float("nan"))
        f = np.asarray(fnmr)
        out["curves"][f"{fmr:g}"] = {
            "threshold": thr, "fnmr": fnmr,
            "pauc_20": _pauc(fractions, f, 0.2), "pauc_100": _pauc(fractions, f, 1.0)}
    return out


def _pauc(x: np.ndarray, y: np.ndarray, upto: float) -> float:
    m = (x <= upto + 1e-12) & np.isfinite(y)
    return float(trapezoid(y[m], x[m])) if m.sum() > 1 else float("nan")


def filtering_efficiency(fnmr_before: float, fnmr_after: float, discarded_percent: float,
                         target: float = 0.01) -> float:
    """η = (target − FNMR_after) / target · 100 / p (at FNMR 1 %)."""
    if discarded_percent <= 0:
        raise FaceForgeError("efficiency needs a positive discarded percentage")
    return (target - fnmr_after) / target * 100.0 / discarded_percent
