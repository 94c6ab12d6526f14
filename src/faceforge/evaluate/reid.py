"""Person re-identification metrics: the cross-camera ranking protocol of the re-id
benchmarks (Market-1501, CUHK03, as torchreid and fast-reid score them), pair accuracy at a
threshold chosen on other people, and k-reciprocal re-ranking.

Ranking rule: each query is ranked against the gallery after removing the gallery images
of the same person taken by the same camera (finding a person again in the camera that
just saw them is not re-identification). A query with no true match left is not counted.
CMC at rank k is the share of counted queries whose first true match is among the top k;
a query's AP is the mean, over its true matches, of the precision at each match's
position; mAP is the mean AP of the counted queries. Ties keep gallery order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faceforge.core.errors import FaceForgeError
from faceforge.evaluate.verification import best_threshold


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def cosine_distance(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """1 − cosine similarity, queries × gallery."""
    return 1.0 - _unit(queries) @ _unit(gallery).T


@dataclass
class RankingResult:
    cmc: np.ndarray          # identification rate at ranks 1..len(cmc), over counted queries
    mean_ap: float
    queries: int             # all queries
    counted: int             # queries with at least one true match in another camera
    first_match: np.ndarray  # per query: rank (1-based) of its first true match, 0 when not counted

    def summary(self) -> dict:
        at = {k: float(self.cmc[min(k, len(self.cmc)) - 1]) for k in (1, 5, 10)}
        return {"rank1": at[1], "rank5": at[5], "rank10": at[10], "mAP": self.mean_ap,
                "queries": self.queries, "counted_queries": self.counted}


def rank_cross_camera(dist: np.ndarray, query_ids, gallery_ids, query_cams, gallery_cams,
                      max_rank: int = 50) -> RankingResult:
    """CMC and mAP of a queries × gallery distance matrix under the ranking rule above."""
    dist = np.asarray(dist, np.float64)
    q_ids, g_ids = np.asarray(query_ids), np.asarray(gallery_ids)
    q_cams, g_cams = np.asarray(query_cams), np.asarray(gallery_cams)
    if dist.ndim != 2 or dist.shape != (len(q_ids), len(g_ids)):
        raise FaceForgeError(f"distance matrix {dist.shape} does not match {len(q_ids)} queries × "
                             f"{len(g_ids)} gallery images")
    if len(q_cams) != len(q_ids) or len(g_cams) != len(g_ids):
        raise FaceForgeError("one camera id per query and per gallery image is needed")
    if not np.isfinite(dist).all():
        raise FaceForgeError("distances contain NaN or infinity")
    max_rank = max(1, min(max_rank, len(g_ids)))
    order = np.argsort(dist, axis=1, kind="stable")
    same_id = g_ids[order] == q_ids[:, None]
    same_cam = g_cams[order] == q_cams[:, None]
    curves, aps = [], []
    first = np.zeros(len(q_ids), np.int64)
    for i in range(len(q_ids)):
        hits = same_id[i][~(same_id[i] & same_cam[i])]
        if not hits.any():
            continue
        first[i] = int(np.argmax(hits)) + 1
        found = np.cumsum(hits)
        curve = np.minimum(found[:max_rank], 1)
        curves.append(np.pad(curve, (0, max_rank - len(curve)), constant_values=1))
        precision = found / np.arange(1, len(hits) + 1)
        aps.append(float(precision[hits].mean()))
    if not curves:
        raise FaceForgeError("no query has a true match in another camera: check the camera ids")
    return RankingResult(np.mean(curves, axis=0), float(np.mean(aps)), len(q_ids), len(curves), first)


def camera_split(cameras, query_camera: int) -> tuple[np.ndarray, np.ndarray]:
    """(query indices, gallery indices): one camera's images query the other cameras' images."""
    cameras = np.asarray(cameras)
    q, g = np.flatnonzero(cameras == query_camera), np.flatnonzero(cameras != query_camera)
    if not len(q) or not len(g):
        raise FaceForgeError(f"camera {query_camera} leaves no queries or no gallery (cameras: "
                             f"{sorted(set(cameras.tolist()))})")
    return q, g


def cross_camera_pairs(ids, cameras, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of one person's images from two different cameras, and as many pairs of
    two different people's images from two different cameras drawn at random (seeded, no pair
    twice): (first index, second index, same person). Memory grows with the pairs drawn,
    not with all N² pairs."""
    ids, cameras = np.asarray(ids), np.asarray(cameras)
    same_i, same_j = [], []
    for person in np.unique(ids):
        idx = np.flatnonzero(ids == person)
        a, b = np.triu_indices(len(idx), 1)
        cross = cameras[idx[a]] != cameras[idx[b]]
        same_i.append(idx[a][cross])
        same_j.append(idx[b][cross])
    si, sj = np.concatenate(same_i), np.concatenate(same_j)
    rng = np.random.default_rng(seed)
    want, chosen = len(si), set()
    di, dj = [], []
    for _ in range(100):  # rejection sampling; each round draws more than what is still missing
        if len(di) >= want:
            break
        a, b = rng.integers(0, len(ids), (2, 4 * (want - len(di)) + 16))
        a, b = np.minimum(a, b), np.maximum(a, b)
        ok = (ids[a] != ids[b]) & (cameras[a] != cameras[b])
        for x, y in zip(a[ok].tolist(), b[ok].tolist()):
            if (x, y) not in chosen and len(di) < want:
                chosen.add((x, y))
                di.append(x)
                dj.append(y)
    if not want or not di:
        raise FaceForgeError("cross-camera pairs need at least two people with images in two cameras")
    first = np.concatenate([si, np.array(di, np.int64)])
    second = np.concatenate([sj, np.array(dj, np.int64)])
    return first, second, np.r_[np.ones(len(si), bool), np.zeros(len(di), bool)]


def pair_similarities(embeddings: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    e = _unit(embeddings)
    return np.einsum("ij,ij->i", e[first], e[second])


def pair_accuracy(train_embeddings: np.ndarray, train_ids, train_cams, test_embeddings: np.ndarray,
                  test_ids, test_cams, seed: int = 0) -> dict:
    """The reference's pair accuracy: the cosine threshold with the best accuracy on the
    training people's cross-camera pairs, applied to the test people's pairs."""
    a, b, same = cross_camera_pairs(train_ids, train_cams, seed)
    threshold, train_acc = best_threshold(pair_similarities(train_embeddings, a, b), same)
    a, b, same = cross_camera_pairs(test_ids, test_cams, seed)
    scores = pair_similarities(test_embeddings, a, b)
    return {"threshold": float(threshold), "train_accuracy": float(train_acc),
            "accuracy": float(np.mean((scores >= threshold) == same)), "pairs": int(len(same)),
            "same_person_pairs": int(same.sum()),
            "best_test_accuracy_for_reference": float(best_threshold(scores, same)[1])}


MAX_RERANK = 12000  # images (queries + gallery): the dense N × N weights take 4 N² bytes


def k_reciprocal_rerank(queries: np.ndarray, gallery: np.ndarray, k1: int = 20, k2: int = 6,
                        lam: float = 0.3, block: int = 16) -> np.ndarray:
    """Re-ranked queries × gallery distances (Zhong et al., CVPR 2017): λ · d + (1 − λ) · the
    Jaccard distance between the k-reciprocal neighbour sets of query and gallery image.

    All images (queries first) are ranked by cosine distance d, each row scaled to a
    maximum of 1. Image p's k-reciprocal set R(p, k1) holds the images among p's k1 + 1
    nearest that also have p among theirs; it is widened by R(c, k1/2) of each member c
    when that set shares more than two thirds of its images with R(p, k1). p's set becomes a
    vector V_p with weight exp(−d(p, x)) on each member x (summing to 1), then averaged over
    p's k2 nearest (local query expansion). The Jaccard distance of p and g is
    1 − Σ min(V_p, V_g) / Σ max(V_p, V_g), and Σ max = 2 − Σ min because both vectors sum
    to 1. Costs O(queries × N²) time over N = queries + gallery (blocks of `block` queries):
    meant for test sets of thousands, not for million-image galleries.
    """
    n, nq = len(queries) + len(gallery), len(queries)
    if not 0.0 <= lam <= 1.0 or k1 < 1 or k2 < 1:
        raise FaceForgeError("re-ranking needs k1 ≥ 1, k2 ≥ 1 and 0 ≤ λ ≤ 1")
    if n > MAX_RERANK:
        raise FaceForgeError(f"re-ranking holds N × N weights: {n} images is over the {MAX_RERANK} it is meant for")
    feats = np.concatenate([_unit(queries), _unit(gallery)])
    dist = np.maximum(1.0 - feats @ feats.T, 0.0)
    dist = dist / np.maximum(dist.max(axis=1, keepdims=True), 1e-12)
    rank = np.argsort(dist, axis=1, kind="stable")

    def reciprocal(p: int, k: int) -> np.ndarray:
        near = rank[p, :k + 1]
        return near[(rank[near, :k + 1] == p).any(axis=1)]

    vectors = np.zeros((n, n), np.float32)
    half = int(round(k1 / 2))
    for p in range(n):
        members = reciprocal(p, k1)
        widened = [members]
        for c in members:
            theirs = reciprocal(int(c), half)
            if len(np.intersect1d(theirs, members)) > 2 / 3 * len(theirs):
                widened.append(theirs)
        members = np.unique(np.concatenate(widened))
        w = np.exp(-dist[p, members])
        vectors[p, members] = w / w.sum()
    if k2 > 1:  # row by row: the fancy-indexed n × k2 × n copy would not fit for large n
        vectors = np.stack([vectors[rank[p, :k2]].mean(axis=0) for p in range(n)])
    jaccard = np.empty((nq, n - nq))
    g_vectors = vectors[nq:]
    for s in range(0, nq, block):
        e = min(s + block, nq)
        shared = np.minimum(vectors[s:e, None, :], g_vectors[None, :, :]).sum(axis=2)
        jaccard[s:e] = 1.0 - shared / (2.0 - shared)
    return lam * dist[:nq, nq:] + (1.0 - lam) * jaccard
