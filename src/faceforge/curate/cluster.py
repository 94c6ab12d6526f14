"""Global clustering of unlabelled faces: a cosine kNN graph (FAISS), edges below a similarity
cut-off dropped, then communities (Leiden, Infomap, or plain connected components). Density
and linkage baselines (DBSCAN, HDBSCAN, agglomerative) share the same entry point, and
`assign_new` adds faces to an existing clustering without redoing it.

Labels are numbered 0..k−1 by cluster size; −1 is a face with no neighbour above the cut-off
(or DBSCAN/HDBSCAN noise). The kNN graph keeps memory at n·k, which is what lets a million
faces fit where an n×n similarity matrix would not.
"""
from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceforge.core.errors import FaceForgeError
from faceforge.core.extras import require
from faceforge.core.vectors import unit_rows
from faceforge.curate.dbscan import renumber_by_size

GRAPH_METHODS = ("leiden", "infomap", "components")
BASELINES = ("dbscan", "hdbscan", "agglomerative")
METHODS = GRAPH_METHODS + BASELINES
INDEXES = ("auto", "flat", "hnsw", "ivf")
EXACT_UP_TO = 100_000  # "auto" searches exactly up to this many faces, IVF above


def _faiss():
    return require("faiss", "curate", "clustering on a kNN graph")


def build_index(vectors: np.ndarray, index: str = "auto", device: str = "cpu", nlist: int | None = None,
                nprobe: int = 16, seed: int = 0):
    """A FAISS inner-product index over unit rows: exact (`flat`), graph (`hnsw`) or inverted
    lists (`ivf`, nlist ≈ 4·√n, trained on at most 64 points per list)."""
    faiss = _faiss()
    if index not in INDEXES:
        raise FaceForgeError(f"unknown index {index!r}; one of {', '.join(INDEXES)}")
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = x.shape
    if index == "auto":
        index = "flat" if n <= EXACT_UP_TO else "ivf"
    if index == "flat":
        idx = faiss.IndexFlatIP(d)
    elif index == "hnsw":
        idx = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        idx.hnsw.efConstruction, idx.hnsw.efSearch = 80, 128
    else:
        nlist = nlist or max(1, min(int(4 * np.sqrt(n)), n // 39))
        idx = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        sample = x if n <= 64 * nlist else x[np.sort(rng.choice(n, 64 * nlist, replace=False))]
        idx.cp.seed, idx.cp.niter, idx.cp.min_points_per_centroid = seed, 10, 1
        idx.train(sample)
        idx.nprobe = min(nprobe, nlist)
    if device.startswith("cuda"):
        if not hasattr(faiss, "StandardGpuResources"):
            raise FaceForgeError("this FAISS build has no GPU support (install faiss-gpu) — use --device cpu")
        idx = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), int(device.partition(":")[2] or 0), idx)
    idx.add(x)
    return idx


def knn(embeddings: np.ndarray, k: int = 10, index: str = "auto", device: str = "cpu",
        batch: int = 65536, **index_kw) -> tuple[np.ndarray, np.ndarray]:
    """Each face's k nearest other faces: (n×k cosine similarities, n×k row indices, −1 where
    fewer were found), best first."""
    e = unit_rows(embeddings, dtype=np.float32)
    n = len(e)
    if k < 1:
        raise FaceForgeError(f"k must be at least 1, got {k}")
    idx = build_index(e, index, device, **index_kw)
    kk = min(k + 1, n)
    sims = np.empty((n, kk), np.float32)
    nbrs = np.empty((n, kk), np.int64)
    for i in range(0, n, batch):
        sims[i:i + batch], nbrs[i:i + batch] = idx.search(e[i:i + batch], kk)
    # drop each face itself (or, among exact duplicates, the last column)
    self_hit = nbrs == np.arange(n)[:, None]
    drop = np.where(self_hit.any(axis=1), self_hit.argmax(axis=1), kk - 1)
    keep = np.ones_like(self_hit)
    keep[np.arange(n), drop] = False
    return sims[keep].reshape(n, kk - 1)[:, :k], nbrs[keep].reshape(n, kk - 1)[:, :k]


def graph_edges(sims: np.ndarray, nbrs: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Undirected kNN edges with similarity ≥ cutoff, each pair once (i < j): (src, dst, weight)."""
    n = len(nbrs)
    src = np.repeat(np.arange(n), nbrs.shape[1])
    dst, w = nbrs.ravel(), sims.ravel()
    ok = (dst >= 0) & (w >= cutoff) & (dst != src)
    a, b, w = np.minimum(src[ok], dst[ok]), np.maximum(src[ok], dst[ok]), w[ok]
    _, first = np.unique(a * n + b, return_index=True)
    return a[first], b[first], w[first].astype(np.float64)


def leiden_membership(n: int, src: np.ndarray, dst: np.ndarray, weight: np.ndarray | None = None,
                      resolution: float = 1.0, seed: int = 0) -> np.ndarray:
    """Leiden communities maximising (weighted) modularity, igraph's C implementation (ten
    times faster than the leidenalg package at equal modularity on a 300k-node graph).
    Deterministic for a seed: igraph draws from a seeded generator of its own here."""
    ig = require("igraph", "curate", "Leiden clustering")
    g = ig.Graph(n=n, edges=np.stack([src, dst], axis=1))
    ig.set_random_number_generator(random.Random(seed))
    try:
        part = g.community_leiden(objective_function="modularity", weights=weight,
                                  resolution=resolution, n_iterations=2)
    finally:
        ig.set_random_number_generator(random)
    return np.asarray(part.membership, np.int64)


def graph_communities(n: int, src: np.ndarray, dst: np.ndarray, weight: np.ndarray,
                      method: str = "leiden", resolution: float = 1.0, seed: int = 0) -> np.ndarray:
    """Communities of a weighted graph on n nodes; isolated nodes are −1, the rest by size."""
    if method not in GRAPH_METHODS:
        raise FaceForgeError(f"unknown graph method {method!r}; one of {', '.join(GRAPH_METHODS)}")
    labels = np.full(n, -1, np.int64)
    if len(src) == 0:
        return labels
    if method == "components":
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components
        _, labels = connected_components(coo_matrix((weight, (src, dst)), shape=(n, n)), directed=False)
    elif method == "leiden":
        labels = leiden_membership(n, src, dst, weight, resolution, seed)
    else:
        infomap = require("infomap", "curate", "Infomap clustering")
        im = infomap.Infomap(silent=True, two_level=True, seed=seed + 1, num_trials=1)
        im.add_links(zip(src.tolist(), dst.tolist(), weight.tolist()))
        im.run()
        # read the result back from Infomap's own .clu writer: iterating its SWIG result objects
        # crashes when FAISS's SWIG module was loaded first (both register a SwigPyIterator)
        with tempfile.TemporaryDirectory() as tmp:
            im.write_clu(str(Path(tmp) / "modules.clu"))
            clu = np.loadtxt(Path(tmp) / "modules.clu", comments="#", usecols=(0, 1), dtype=np.int64, ndmin=2)
        labels[clu[:, 0]] = clu[:, 1]
    degree = np.bincount(src, minlength=n) + np.bincount(dst, minlength=n)
    labels[degree == 0] = -1
    return renumber_by_size(labels)


def cluster_embeddings(embeddings: np.ndarray, method: str = "leiden", cutoff: float = 0.5, k: int = 10,
                       index: str = "auto", device: str = "cpu", min_samples: int = 2, resolution: float = 1.0,
                       seed: int = 0, nprobe: int = 16) -> np.ndarray:
    """One label per face (−1 unclustered). `cutoff` is a cosine similarity: the kNN edge
    threshold of the graph methods, 1 − eps for DBSCAN, 1 − distance threshold (average
    linkage) for agglomerative; HDBSCAN needs none (min_cluster_size = min_samples).
    `nprobe`: inverted lists an `ivf` search visits (more: nearer exact, slower)."""
    if method not in METHODS:
        raise FaceForgeError(f"unknown clustering method {method!r}; one of {', '.join(METHODS)}")
    x = np.asarray(embeddings)
    n = len(x)
    if n <= 1:
        unit_rows(x)  # the same checks, then nothing to cluster
        return np.full(n, -1, np.int64)
    if method in GRAPH_METHODS:  # knn normalises its own float32 copy: one copy of a large set
        sims, nbrs = knn(x, k, index, device, nprobe=nprobe)
        return graph_communities(n, *graph_edges(sims, nbrs, cutoff), method=method, resolution=resolution,
                                 seed=seed)
    e = unit_rows(x, dtype=np.float32)
    if method == "dbscan":
        from faceforge.curate.dbscan import dbscan_labels
        return dbscan_labels(e, eps=1.0 - cutoff, min_samples=min_samples)
    sk_cluster = require("sklearn.cluster", "curate", f"{method} clustering")
    if method == "hdbscan":
        # on unit vectors, euclidean distance is a monotone function of cosine
        return renumber_by_size(sk_cluster.HDBSCAN(min_cluster_size=max(2, min_samples), copy=True).fit(e).labels_)
    labels = sk_cluster.AgglomerativeClustering(n_clusters=None, distance_threshold=1.0 - cutoff, metric="cosine",
                                                linkage="average").fit(e).labels_
    sizes = np.bincount(labels)
    labels = np.where(sizes[labels] > 1, labels, -1)
    return renumber_by_size(labels)


def _weighted_vote(votes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per row, the label with the largest total weight (ties: the smaller label); −1 where
    every weight is zero."""
    m, k = votes.shape
    rows = np.repeat(np.arange(m), k)
    ok = weights.ravel() > 0
    if not ok.any():
        return np.full(m, -1, np.int64)
    r, v, w = rows[ok], votes.ravel()[ok], weights.ravel()[ok].astype(np.float64)
    base = int(v.max()) + 1  # one key per (row, label)
    keys, inv = np.unique(r * base + v, return_inverse=True)
    total = np.bincount(inv.reshape(-1), weights=w)
    kr, kv = keys // base, keys % base
    order = np.lexsort((kv, -total, kr))  # by row, then heaviest, then smallest label
    out = np.full(m, -1, np.int64)
    first = np.ones(len(order), bool)
    first[1:] = kr[order][1:] != kr[order][:-1]
    out[kr[order][first]] = kv[order][first]
    return out


@dataclass
class Assignment:
    """Labels for the new faces (existing cluster ids, new ids from `first_new_label`, −1)
    and, per new face, the best similarity to an existing clustered face."""

    labels: np.ndarray
    best_similarity: np.ndarray
    first_new_label: int


def assign_new(embeddings: np.ndarray, labels: np.ndarray, new_embeddings: np.ndarray, cutoff: float = 0.5,
               k: int = 10, method: str = "leiden", index: str = "auto", device: str = "cpu",
               seed: int = 0, nprobe: int = 16) -> Assignment:
    """Incremental clustering: each new face joins the existing cluster holding most of its
    neighbours above the cut-off (similarity-weighted vote over its k nearest clustered faces);
    the rest are clustered among themselves and open new clusters numbered after the old ones."""
    old = unit_rows(embeddings, dtype=np.float32)
    lab = np.asarray(labels, np.int64)
    if lab.shape != (len(old),):
        raise FaceForgeError(f"{len(old)} existing faces but {lab.shape} labels")
    new = unit_rows(new_embeddings, dtype=np.float32)
    if new.shape[1:] != old.shape[1:]:
        raise FaceForgeError(f"new embeddings are {new.shape[1:]}-d, the clustering is {old.shape[1:]}-d")
    out = np.full(len(new), -1, np.int64)
    best = np.full(len(new), -np.inf, np.float32)
    clustered = np.flatnonzero(lab >= 0)
    first_new = int(lab.max()) + 1 if len(lab) else 0
    if len(clustered) and len(new):
        idx = build_index(old[clustered], index, device, nprobe=nprobe)
        sims, nbrs = idx.search(np.ascontiguousarray(new), min(k, len(clustered)))
        best = sims[:, 0].copy()
        out = _weighted_vote(np.where(nbrs >= 0, lab[clustered[np.maximum(nbrs, 0)]], -1),
                             np.where((nbrs >= 0) & (sims >= cutoff), sims, 0.0))
    rest = np.flatnonzero(out < 0)
    if len(rest) > 1:
        fresh = cluster_embeddings(new[rest], method, cutoff, k, index, device, seed=seed, nprobe=nprobe)
        out[rest] = np.where(fresh >= 0, fresh + first_new, -1)
    return Assignment(out, best, first_new)
