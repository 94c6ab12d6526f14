"""Verification metrics from similarity scores and same/different labels (numpy)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from faceforge.core.errors import FaceForgeError

DEFAULT_FPRS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    if s.shape != y.shape:
        raise FaceForgeError(f"{len(s)} scores but {len(y)} labels")
    if not np.isfinite(s).all():
        raise FaceForgeError("scores contain NaN or infinity")
    return s, y


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Threshold (accept if score ≥ t) with the highest accuracy, and that accuracy.
    Candidates are midpoints between consecutive distinct scores, plus both ends."""
    s, y = _check(scores, labels)
    if len(s) == 0:
        raise FaceForgeError("no scores to choose a threshold from")
    order = np.argsort(s, kind="stable")
    s, y = s[order], y[order]
    uniq, first = np.unique(s, return_index=True)
    # Rejecting everything below uniq[k]: correct = negatives below + positives at/above.
    neg_below = np.concatenate([[0], np.cumsum(~y)])[first]
    pos_at_above = y.sum() - np.concatenate([[0], np.cumsum(y)])[first]
    correct = np.concatenate([neg_below + pos_at_above, [(~y).sum()]])
    cands = np.concatenate([[uniq[0] - 1e-6], (uniq[:-1] + uniq[1:]) / 2, [uniq[-1] + 1e-6]])
    # correct[k] corresponds to threshold just at uniq[k] → candidate between uniq[k-1] and uniq[k].
    k = int(np.argmax(correct))
    return float(cands[k]), float(correct[k] / len(s))


def kfold_accuracy(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> dict:
    """LFW protocol: for each fold, choose the threshold on the others, test on it."""
    s, y = _check(scores, labels)
    folds = np.asarray(folds).ravel()
    if len(np.unique(folds)) < 2:
        raise FaceForgeError("k-fold accuracy needs at least 2 folds")
    accs, thrs = [], []
    for f in np.unique(folds):
        test = folds == f
        t, _ = best_threshold(s[~test], y[~test])
        accs.append(float(((s[test] >= t) == y[test]).mean()))
        thrs.append(t)
    return {"accuracy_mean": float(np.mean(accs)), "accuracy_std": float(np.std(accs)),
            "fold_accuracies": accs, "fold_thresholds": thrs}


@dataclass
class RocCurve:
    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


def roc(scores: np.ndarray, labels: np.ndarray) -> RocCurve:
    """ROC at every distinct score (accept if score ≥ threshold), ties handled as one step."""
    s, y = _check(scores, labels)
    npos, nneg = int(y.sum()), int((~y).sum())
    if npos == 0 or nneg == 0:
        raise FaceForgeError(f"ROC needs both classes ({npos} positive, {nneg} negative pairs)")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[last]
    fp = np.cumsum(~y)[last]
    return RocCurve(fpr=np.r_[0.0, fp / nneg], tpr=np.r_[0.0, tp / npos], thresholds=np.r_[np.inf, s[last]])


def tpr_at_fpr(scores: np.ndarray, labels: np.ndarray, fprs=DEFAULT_FPRS) -> dict[str, dict]:
    """For each target FPR: the threshold t (accept if score > t) that admits at most
    ⌊fpr·N⌋ of the N negatives, and the TPR there. Targets below 1/N are NaN (warned).

    Linear time and about one extra copy of the scores: the needed order statistics of the
    negatives come from one np.partition, never a full sort, and float32 stays float32.
    """
    s = np.asarray(scores).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape:
        raise FaceForgeError(f"{len(s)} scores but {len(y)} labels")
    if s.dtype.kind != "f":
        s = s.astype(np.float64)
    if not np.isfinite(s).all():
        raise FaceForgeError("scores contain NaN or infinity")
    y = y.astype(bool, copy=False)
    neg, pos = s[~y], s[y]
    if len(neg) == 0 or len(pos) == 0:
        raise FaceForgeError("TPR@FPR needs both positive and negative pairs")
    ks = {fpr: int(np.floor(fpr * len(neg))) for fpr in fprs}
    # The (k+1)-th highest negative sits at ascending index len(neg) - 1 - k.
    kth = sorted({len(neg) - 1 - k for k in ks.values() if 1 <= k < len(neg)})
    if kth:
        neg.partition(kth)
    out = {}
    for fpr, k in ks.items():
        if k < 1:
            warnings.warn(f"FPR {fpr:g} is below 1/{len(neg)} negatives: not measurable", stacklevel=2)
            out[f"{fpr:g}"] = {"tpr": float("nan"), "threshold": float("nan")}
            continue
        # Accepting scores strictly above the (k+1)-th highest negative admits at most k.
        thr = neg[len(neg) - 1 - k] if k < len(neg) else -np.inf
        out[f"{fpr:g}"] = {"tpr": float(np.count_nonzero(pos > thr) / len(pos)), "threshold": float(thr)}
    return out


def auc(curve: RocCurve) -> float:
    return float(np.trapezoid(curve.tpr, curve.fpr))
