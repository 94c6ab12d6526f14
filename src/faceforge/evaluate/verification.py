"""Verification metrics from similarity scores and same/different labels (numpy)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from faceforge.core.errors import FaceForgeError

DEFAULT_FPRS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
# the trapezoidal rule under its NumPy 2 name, or its NumPy 1 one (the project allows both)
trapezoid = getattr(np, "trapezoid", None) or np.trapz


def _check(scores: np.ndarray, labels: np.ndarray, as_float64: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Flat scores and boolean labels of one length, scores finite. as_float64=False keeps
    float scores in their dtype (float32 stays float32: no 2× copy of tens of millions)."""
    s = np.asarray(scores).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape:
        raise FaceForgeError(f"{len(s)} scores but {len(y)} labels")
    if as_float64 or s.dtype.kind != "f":
        s = s.astype(np.float64, copy=False)
    if not np.isfinite(s).all():
        raise FaceForgeError("scores contain NaN or infinity")
    return s, y.astype(bool, copy=False)


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
    """ROC at every distinct score (accept if score ≥ threshold), ties handled as one step.
    float32 scores stay float32, so tens of millions of pair scores fit comfortably."""
    s, y = _check(scores, labels, as_float64=False)
    npos, nneg = int(y.sum()), int((~y).sum())
    if npos == 0 or nneg == 0:
        raise FaceForgeError(f"ROC needs both classes ({npos} positive, {nneg} negative pairs)")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[last]
    fp = np.cumsum(~y)[last]
    return RocCurve(fpr=np.r_[0.0, fp / nneg], tpr=np.r_[0.0, tp / npos], thresholds=np.r_[np.inf, s[last]])


def thresholds_at_fpr(negatives: np.ndarray, fprs=DEFAULT_FPRS, copy: bool = True) -> dict[float, float]:
    """For each target rate, the threshold t such that accepting score > t admits at most
    ⌊fpr·N⌋ of the N negative scores: the (k+1)-th highest negative. NaN (warned) where
    fpr < 1/N. Linear time: one np.partition, never a full sort (copy=False partitions the
    caller's array in place, for callers that own it)."""
    neg = (np.array(negatives, copy=True) if copy else np.asarray(negatives)).ravel()
    ks = {fpr: int(np.floor(fpr * len(neg))) for fpr in fprs}
    # The (k+1)-th highest negative sits at ascending index len(neg) - 1 - k.
    kth = sorted({len(neg) - 1 - k for k in ks.values() if 1 <= k < len(neg)})
    if kth:
        neg.partition(kth)
    out = {}
    for fpr, k in ks.items():
        if k < 1:
            warnings.warn(f"FPR {fpr:g} is below 1/{len(neg)} negatives: not measurable", stacklevel=3)
            out[fpr] = float("nan")
        else:
            out[fpr] = float(neg[len(neg) - 1 - k]) if k < len(neg) else -np.inf
    return out


def tpr_at_fpr(scores: np.ndarray, labels: np.ndarray, fprs=DEFAULT_FPRS) -> dict[str, dict]:
    """For each target FPR: the threshold t (accept if score > t) that admits at most
    ⌊fpr·N⌋ of the N negatives, and the TPR there. Targets below 1/N are NaN (warned).

    Linear time and about one extra copy of the scores: the needed order statistics of the
    negatives come from one np.partition, never a full sort, and float32 stays float32.
    """
    s, y = _check(scores, labels, as_float64=False)
    neg, pos = s[~y], s[y]
    if len(neg) == 0 or len(pos) == 0:
        raise FaceForgeError("TPR@FPR needs both positive and negative pairs")
    out = {}
    for fpr, thr in thresholds_at_fpr(neg, fprs, copy=False).items():
        tpr = float(np.count_nonzero(pos > thr) / len(pos)) if not np.isnan(thr) else float("nan")
        out[f"{fpr:g}"] = {"tpr": tpr, "threshold": thr}
    return out


def auc(curve: RocCurve) -> float:
    return float(trapezoid(curve.tpr, curve.fpr))


def eer(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Equal error rate: where the false positive rate meets the false negative rate on the
    ROC, interpolated linearly between the two ROC points that bracket the crossing."""
    return eer_from_roc(roc(scores, labels))


def eer_from_roc(c: RocCurve) -> dict[str, float]:
    diff = c.fpr - (1.0 - c.tpr)  # rises from -1 to +1 along the curve
    i = int(np.argmax(diff >= 0))
    if i == 0 or diff[i] == 0:
        return {"eer": float(c.fpr[i]), "threshold": float(c.thresholds[i])}
    w = -diff[i - 1] / (diff[i] - diff[i - 1])
    rate = c.fpr[i - 1] + w * (c.fpr[i] - c.fpr[i - 1])
    return {"eer": float(rate), "threshold": float(c.thresholds[i])}


def score_histograms(scores: np.ndarray, labels: np.ndarray, bins: int = 100,
                     value_range: tuple[float, float] | None = None) -> dict:
    """Genuine and impostor score counts on shared bins, plus the decidability index d'."""
    s, y = _check(scores, labels, as_float64=False)
    if not y.any() or y.all():
        raise FaceForgeError("score distributions need both genuine and impostor pairs")
    lo, hi = value_range or (float(s.min()), float(s.max()))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    gen, imp = s[y], s[~y]
    gm, im = gen.mean(dtype=np.float64), imp.mean(dtype=np.float64)
    spread = gen.var(dtype=np.float64) + imp.var(dtype=np.float64)
    d_prime = abs(gm - im) / np.sqrt(spread / 2) if spread > 0 else float("inf")
    return {"edges": edges.tolist(), "genuine": np.histogram(gen, edges)[0].tolist(),
            "impostor": np.histogram(imp, edges)[0].tolist(), "d_prime": float(d_prime),
            "genuine_mean": float(gm), "impostor_mean": float(im)}


def all_pairs_scores(embeddings: np.ndarray, identities: np.ndarray, block: int = 1024,
                     quality: list[np.ndarray] | None = None):
    """Cosine of every unordered pair i < j of unit vectors and whether it is a same-identity
    pair, computed in row blocks: memory is the output plus one block × N slab, never N × N.
    With `quality` (per-image arrays), also each pair's quality, the lower of its two."""
    e = np.ascontiguousarray(embeddings, dtype=np.float32)
    ids = np.asarray(identities)
    n = len(e)
    if e.ndim != 2 or len(ids) != n:
        raise FaceForgeError(f"need an N×D embedding matrix and N identities, got {e.shape} and {len(ids)}")
    if n < 2:
        raise FaceForgeError("all-pairs scoring needs at least two embeddings")
    if not np.isfinite(e).all():
        raise FaceForgeError("embeddings contain NaN or infinity")
    qs = [np.asarray(q, dtype=np.float64) for q in quality or []]
    if any(q.shape != (n,) for q in qs):
        raise FaceForgeError(f"each quality array needs one value per embedding ({n})")
    _, codes = np.unique(ids, return_inverse=True)
    total = n * (n - 1) // 2
    scores = np.empty(total, dtype=np.float32)
    same = np.empty(total, dtype=bool)
    qmin = [np.empty(total, dtype=np.float64) for _ in qs]
    pos = 0
    for a in range(0, n, block):
        b = min(a + block, n)
        slab = e[a:b] @ e[a:].T  # rows a..b against columns a..n
        for r in range(b - a):
            i = a + r
            m = n - i - 1  # columns to the right of the diagonal
            scores[pos:pos + m] = slab[r, r + 1:]
            same[pos:pos + m] = codes[i + 1:] == codes[i]
            for q, out in zip(qs, qmin):
                np.minimum(q[i + 1:], q[i], out=out[pos:pos + m])
            pos += m
    return (scores, same, qmin) if quality is not None else (scores, same)


def verification_report(scores: np.ndarray, same: np.ndarray, fprs=DEFAULT_FPRS,
                        bins: int = 100) -> tuple[dict, RocCurve]:
    """The standard numbers for one set of scored pairs (JSON-ready) and its ROC curve."""
    y = np.asarray(same).astype(bool)
    curve = roc(scores, y)
    table = tpr_at_fpr(scores, y, fprs)  # unmeasurable FPRs: NaN, with a warning
    res = {"pairs": int(len(y)), "positives": int(y.sum()), "negatives": int((~y).sum()),
           "tpr_at_fpr": table, "eer": eer_from_roc(curve), "auc": auc(curve),
           "distributions": score_histograms(scores, y, bins=bins)}
    return res, curve
