"""Identification metrics on L2-normalised embeddings (cosine = dot product).

identification_with_distractors (SPEC §10): positives are all same-identity query pairs;
negatives all cross-identity query pairs plus every query × distractor pair; for a target
FPR the threshold is F[min(⌊fpr·|F|⌋, |F| − 1)] of the negatives sorted descending, and
TPR = mean(positives ≥ threshold).

topk_decisions (SPEC §9): the majority identity among the top K gallery hits; for K > 1 its
score is the mean of its ⌊K/2⌋ best similarities (no decision with fewer hits), for K = 1
the top similarity; accepted if score ≥ threshold. Precision = correct / accepted, recall =
correct / all queries.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from faceforge.core.errors import FaceForgeError


def identification_with_distractors(queries: np.ndarray, labels: np.ndarray, distractors: np.ndarray,
                                    fprs=(0.5, 0.3, 0.1)) -> dict[str, dict]:
    q = np.asarray(queries, dtype=np.float64)
    d = np.asarray(distractors, dtype=np.float64).reshape(-1, q.shape[1]) if len(distractors) else \
        np.zeros((0, q.shape[1]))
    labels = np.asarray(labels)
    if len(q) != len(labels):
        raise FaceForgeError(f"{len(q)} queries but {len(labels)} labels")
    iu = np.triu_indices(len(q), k=1)
    qq = (q @ q.T)[iu]
    same = (labels[:, None] == labels[None, :])[iu]
    pos = qq[same]
    neg = np.concatenate([qq[~same], (q @ d.T).ravel()])
    if len(pos) == 0 or len(neg) == 0:
        raise FaceForgeError("need at least one same-identity pair and one negative pair")
    f = np.sort(neg)[::-1]
    out = {}
    for fpr in fprs:
        thr = f[min(int(np.floor(fpr * len(f))), len(f) - 1)]
        out[f"{fpr:g}"] = {"threshold": float(thr), "tpr": float(np.mean(pos >= thr))}
    return out


def topk_decision(hit_labels: list, hit_scores: list[float], k: int) -> tuple[object | None, float | None]:
    """(identity, score) decided from one query's hits sorted by similarity (best first)."""
    labels, scores = list(hit_labels)[:k], list(hit_scores)[:k]
    if not labels:
        return None, None
    if k == 1:
        return labels[0], float(scores[0])
    ident = Counter(labels).most_common(1)[0][0]  # ties: the identity seen first (higher hit)
    mine = sorted((s for l, s in zip(labels, scores) if l == ident), reverse=True)
    need = k // 2
    if len(mine) < need:
        return None, None
    return ident, float(np.mean(mine[:need]))


def topk_precision_recall(gallery: np.ndarray, gallery_labels: np.ndarray, queries: np.ndarray,
                          query_labels: np.ndarray, k: int, threshold: float) -> dict[str, float]:
    g, q = np.asarray(gallery, np.float64), np.asarray(queries, np.float64)
    sims = q @ g.T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    accepted = correct = 0
    for i in range(len(q)):
        ident, score = topk_decision(np.asarray(gallery_labels)[order[i]].tolist(), sims[i, order[i]].tolist(), k)
        if ident is None or score < threshold:
            continue
        accepted += 1
        correct += ident == query_labels[i]
    return {"k": k, "threshold": threshold, "accepted": accepted, "correct": int(correct),
            "precision": correct / accepted if accepted else float("nan"), "recall": correct / len(q)}
