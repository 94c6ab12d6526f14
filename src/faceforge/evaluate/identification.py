"""Identification metrics on L2-normalised embeddings (cosine = dot product).

identification_with_distractors: positives are all same-identity query pairs;
negatives all cross-identity query pairs plus every query × distractor pair; for a target
FPR the threshold is F[min(⌊fpr·|F|⌋, |F| − 1)] of the negatives sorted descending, and
TPR = mean(positives ≥ threshold).

open_set_identification: a gallery of enrolled identities and probes, some of whom are
enrolled (mated) and some not. FPIR(t) = share of non-mated probes whose best gallery
score is > t; TPIR(t) = share of mated probes whose mate score is > t *and* beats every
non-mate (a tie with a non-mate is a miss). CMC rank-r = share of mated probes whose mate
ranks ≤ r among identities, ties counted against the mate.

topk_decisions: the majority identity among the top K gallery hits; for K > 1 its
score is the mean of its ⌊K/2⌋ best similarities (no decision with fewer hits), for K = 1
the top similarity; accepted if score ≥ threshold. Precision = correct / accepted, recall =
correct / all queries.
"""
from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np

from faceforge.core.errors import FaceForgeError
from faceforge.evaluate.verification import thresholds_at_fpr


def _checked_matrix(x: np.ndarray, what: str, dim: int | None = None) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or (dim is not None and len(x) and x.shape[1] != dim):
        raise FaceForgeError(f"{what}: expected an N×{dim or 'D'} matrix, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise FaceForgeError(f"{what}: embeddings contain NaN or infinity")
    return x


def _negative_blocks(q: np.ndarray, labels: np.ndarray, d: np.ndarray, block: int):
    """Every negative score, a block at a time, in a fixed order: cross-identity query pairs
    (i < j), then query × distractor."""
    for a in range(0, len(q), block):
        s = q[a:a + block] @ q.T
        rows = np.arange(a, min(a + block, len(q)))[:, None]
        upper = np.arange(len(q))[None, :] > rows
        yield s[upper & (labels[a:a + block, None] != labels[None, :])]
        for b in range(0, len(d), 64 * block):
            yield (q[a:a + block] @ d[b:b + 64 * block].T).ravel()


def identification_with_distractors(queries: np.ndarray, labels: np.ndarray, distractors: np.ndarray,
                                    fprs=(0.5, 0.3, 0.1), block: int = 256, bins: int = 1 << 20) -> dict[str, dict]:
    """Thresholds and TPRs as in the module's rule, in memory that does not grow with the
    number of negatives (10k queries × 1M distractors is 10¹⁰ of them): a first pass counts
    the negatives in `bins` equal bins over [−1, 1], which tells in which bin each wanted
    rank falls; a second pass keeps only the scores in those bins and sorts them. Exact:
    the ranks are those of the sorted negatives."""
    q = np.asarray(queries, dtype=np.float64)
    d = np.asarray(distractors, dtype=np.float64).reshape(-1, q.shape[1]) if len(distractors) else \
        np.zeros((0, q.shape[1]))
    labels = np.asarray(labels)
    if len(q) != len(labels):
        raise FaceForgeError(f"{len(q)} queries but {len(labels)} labels")
    pos = []
    for a in range(0, len(q), block):
        s = q[a:a + block] @ q.T
        rows = np.arange(a, min(a + block, len(q)))[:, None]
        pos.append(s[(np.arange(len(q))[None, :] > rows) & (labels[a:a + block, None] == labels[None, :])])
    pos = np.concatenate(pos) if pos else np.zeros(0)

    def bin_of(v: np.ndarray) -> np.ndarray:
        return np.clip(((v + 1.0) * (bins / 2.0)).astype(np.int64), 0, bins - 1)

    hist = np.zeros(bins, np.int64)
    for neg in _negative_blocks(q, labels, d, block):
        hist += np.bincount(bin_of(neg), minlength=bins)
    total = int(hist.sum())
    if len(pos) == 0 or total == 0:
        raise FaceForgeError("need at least one same-identity pair and one negative pair")
    above = np.concatenate([[0], np.cumsum(hist[::-1])])  # negatives in the top k bins
    wanted = {}
    for fpr in fprs:
        rank = min(int(np.floor(fpr * total)), total - 1)   # 0-based, in descending order
        k = int(np.searchsorted(above, rank, side="right"))  # the rank lies in the k-th bin from the top
        wanted[fpr] = (bins - k, rank - int(above[k - 1]))
    keep = {b for b, _ in wanted.values()}
    inside: dict[int, list[np.ndarray]] = {b: [] for b in keep}
    for neg in _negative_blocks(q, labels, d, block):
        nb = bin_of(neg)
        for b in keep:
            inside[b].append(neg[nb == b])
    ordered = {b: np.sort(np.concatenate(v))[::-1] for b, v in inside.items()}
    out = {}
    for fpr in fprs:
        b, r = wanted[fpr]
        thr = ordered[b][r]
        out[f"{fpr:g}"] = {"threshold": float(thr), "tpr": float(np.mean(pos >= thr))}
    return out


@dataclass
class ProbeScores:
    """Per probe: its mate's best score (NaN if not enrolled), the best non-mate score, and
    the mate's rank among identities (0 if not enrolled)."""
    mated: np.ndarray
    mate: np.ndarray
    nonmate: np.ndarray
    rank: np.ndarray


def probe_scores(gallery: np.ndarray, gallery_labels, probes: np.ndarray, probe_labels,
                 block: int = 2048) -> ProbeScores:
    """Best score per gallery identity for each probe, reduced to mate / best non-mate / rank.
    Probes go in blocks, so memory is block × gallery, never probes × gallery."""
    g = _checked_matrix(gallery, "gallery")
    p = _checked_matrix(probes, "probes", g.shape[1])
    gl, pl = np.asarray(gallery_labels), np.asarray(probe_labels)
    if len(g) != len(gl) or len(p) != len(pl):
        raise FaceForgeError(f"{len(g)} gallery vectors / {len(gl)} labels, {len(p)} probes / {len(pl)} labels")
    if len(g) == 0 or len(p) == 0:
        raise FaceForgeError("identification needs a non-empty gallery and probe set")
    ids, codes = np.unique(gl, return_inverse=True)
    order = np.argsort(codes, kind="stable")
    g, codes = g[order], codes[order]
    starts = np.r_[0, np.flatnonzero(np.diff(codes)) + 1]
    pos = np.searchsorted(ids, pl)
    mated = (pos < len(ids)) & (ids[np.minimum(pos, len(ids) - 1)] == pl)
    mate = np.full(len(p), np.nan, np.float32)
    nonmate = np.empty(len(p), np.float32)
    rank = np.zeros(len(p), np.int64)
    for a in range(0, len(p), block):
        per_id = np.maximum.reduceat(p[a:a + block] @ g.T, starts, axis=1)  # block × identities
        rows = np.arange(len(per_id))
        m = mated[a:a + block]
        col = np.where(m, pos[a:a + block], 0)
        ms = per_id[rows, col]
        others = per_id.copy()
        others[rows[m], col[m]] = -np.inf
        nonmate[a:a + block] = others.max(axis=1) if others.shape[1] else -np.inf
        mate[a:a + block] = np.where(m, ms, np.nan)
        rank[a:a + block] = np.where(m, 1 + (others >= ms[:, None]).sum(axis=1), 0)
    return ProbeScores(mated, mate, nonmate, rank)


def _enrolled(ps: ProbeScores) -> ProbeScores:
    if not ps.mated.any():
        raise FaceForgeError("no probe's identity is enrolled in the gallery: nothing to identify")
    return ps


def open_set_identification(gallery: np.ndarray, gallery_labels, probes: np.ndarray, probe_labels,
                            fpirs=(1e-3, 1e-2, 1e-1), ranks=(1, 5, 10)) -> dict:
    """TPIR at FPIR (rank 1, threshold rule of tpr_at_fpr) and the CMC at `ranks` of the
    mated probes."""
    ps = _enrolled(probe_scores(gallery, gallery_labels, probes, probe_labels))
    mate, nonmate = ps.mate[ps.mated], ps.nonmate[ps.mated]
    hit = mate > nonmate
    res = {"probes": int(len(ps.mated)), "mated": int(ps.mated.sum()), "non_mated": int((~ps.mated).sum()),
           "cmc": {str(r): float(np.mean(ps.rank[ps.mated] <= r)) for r in ranks}}
    if ps.mated.all():
        warnings.warn("no non-mated probes: TPIR at FPIR is not measurable", stacklevel=2)
        thrs = {f: float("nan") for f in fpirs}
    else:
        thrs = thresholds_at_fpr(ps.nonmate[~ps.mated], fpirs)
    res["tpir_at_fpir"] = {
        f"{f:g}": {"threshold": t, "tpir": float("nan") if np.isnan(t) else float(np.mean(hit & (mate > t)))}
        for f, t in thrs.items()}
    return res


def cmc(gallery: np.ndarray, gallery_labels, probes: np.ndarray, probe_labels, max_rank: int = 20) -> np.ndarray:
    """Identification rate at ranks 1..max_rank over the mated probes (ties count against)."""
    ps = _enrolled(probe_scores(gallery, gallery_labels, probes, probe_labels))
    r = ps.rank[ps.mated]
    return np.array([np.mean(r <= k) for k in range(1, max_rank + 1)])


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


@dataclass
class TopKDecisions:
    """One decision per query: score NaN where the rule makes none."""
    k: int
    identity: list
    score: np.ndarray
    correct: np.ndarray

    def at(self, threshold: float) -> dict[str, float]:
        """Precision and recall when decisions with score ≥ threshold are accepted."""
        acc = np.nan_to_num(self.score, nan=-np.inf) >= threshold
        accepted, correct = int(acc.sum()), int((acc & self.correct).sum())
        return {"k": self.k, "threshold": float(threshold), "accepted": accepted, "correct": correct,
                "precision": correct / accepted if accepted else float("nan"),
                "recall": correct / len(self.score)}

    def threshold_for_precision(self, target: float) -> dict[str, float]:
        """The lowest threshold (so the highest recall) whose precision reaches the target;
        NaN with a warning when no threshold does."""
        decided = np.isfinite(self.score)
        s, c = self.score[decided], self.correct[decided]
        order = np.argsort(-s, kind="stable")
        s, c = s[order], c[order]
        last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # accept score ≥ s[last]: ties together
        precision = np.cumsum(c)[last] / (last + 1)
        ok = np.flatnonzero(precision >= target)
        if len(ok) == 0:
            warnings.warn(f"no threshold reaches precision {target:g}", stacklevel=2)
            return {"k": self.k, "target_precision": target, "threshold": float("nan"),
                    "precision": float("nan"), "recall": 0.0, "accepted": 0, "correct": 0}
        return {"target_precision": target, **self.at(float(s[last[ok[-1]]]))}


def topk_decisions(gallery: np.ndarray, gallery_labels, queries: np.ndarray, query_labels, k: int,
                   block: int = 2048) -> TopKDecisions:
    """Top-K majority decisions for every query; queries go in blocks (memory block × gallery)."""
    g = _checked_matrix(gallery, "gallery")
    q = _checked_matrix(queries, "queries", g.shape[1])
    gl, ql = np.asarray(gallery_labels), np.asarray(query_labels)
    if len(g) != len(gl) or len(q) != len(ql):
        raise FaceForgeError(f"{len(g)} gallery vectors / {len(gl)} labels, {len(q)} queries / {len(ql)} labels")
    if k < 1 or len(g) == 0:
        raise FaceForgeError(f"top-K needs k ≥ 1 and a non-empty gallery (k={k}, gallery {len(g)})")
    kk = min(k, len(g))
    idents, scores = [], np.full(len(q), np.nan)
    for a in range(0, len(q), block):
        sims = q[a:a + block] @ g.T
        top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        top_s = np.take_along_axis(sims, top, axis=1)
        o = np.lexsort((top, -top_s), axis=1)  # best first; equal scores by gallery order
        top, top_s = np.take_along_axis(top, o, axis=1), np.take_along_axis(top_s, o, axis=1)
        for i in range(len(top)):
            ident, score = topk_decision(gl[top[i]].tolist(), top_s[i].tolist(), k)
            idents.append(ident)
            if score is not None:
                scores[a + i] = score
    correct = np.array([i is not None and i == t for i, t in zip(idents, ql.tolist())], bool)
    return TopKDecisions(k, idents, scores, correct)


def topk_precision_recall(gallery: np.ndarray, gallery_labels: np.ndarray, queries: np.ndarray,
                          query_labels: np.ndarray, k: int, threshold: float) -> dict[str, float]:
    return topk_decisions(gallery, gallery_labels, queries, query_labels, k).at(threshold)
