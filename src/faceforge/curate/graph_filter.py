"""Per-identity graph filtering of a labelled face dataset (the reference's FaceDatasetFiltering).

Within one identity, images i and j are joined when their cosine similarity reaches the lower
of their two qualities minus a margin: S_ij ≥ min(q_i, q_j) − margin. A good pair of faces
must agree as well as good faces usually do; a poor face is held to the lower standard its
quality predicts, so blurred or turned photos of the right person stay connected. Communities
of that graph (label propagation, as the reference; Leiden as an option) are numbered by size,
0 being the largest — the identity itself in a reasonably clean folder — and an image without
any edge is −1. Quality is the raw regressor output in [0, 1] (a cosine to the class centre);
without quality a constant threshold is the same rule with q = threshold + margin.
`filter_dataset` runs any of these, or the DBSCAN baselines, over every identity of a dataset.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faceforge.core.errors import FaceForgeError
from faceforge.core.vectors import unit_rows
from faceforge.curate.dbscan import dbscan_labels, elbow_eps, renumber_by_size
from faceforge.models.cards import SFACE

METHODS = ("label_propagation", "leiden")
FILTER_METHODS = METHODS + ("dbscan", "elbow-dbscan")  # the DBSCAN baselines in the same loop
REFERENCE_MARGIN = 0.1
# the margin rule was made for an ArcFace-like cosine scale: SFace's same-person threshold
REFERENCE_THRESHOLD = SFACE.threshold("verify")


def scaled_margin(threshold: float, margin: float = REFERENCE_MARGIN) -> float:
    """The reference margin carried to another model's cosine scale: margin·(1 − t)/(1 − t_ref),
    t_ref = SFace's 0.363. A model whose same-person cosines live in [0.905, 1] (dlib-r29) has
    strangers at ≈ 0.85, so an unscaled 0.1 would join them (bench/curation_lfw.py measures both)."""
    if not -1.0 < threshold < 1.0:
        raise FaceForgeError(f"a cosine threshold must lie in (−1, 1), got {threshold}")
    return margin * (1.0 - threshold) / (1.0 - REFERENCE_THRESHOLD)


def quality_edges(embeddings: np.ndarray, quality: np.ndarray, margin: float = 0.1) -> np.ndarray:
    """N×N boolean adjacency: S_ij ≥ min(q_i, q_j) − margin, no self-loops (vectorised; one
    identity's images at a time, so N×N stays small)."""
    e = unit_rows(embeddings)
    q = np.asarray(quality, dtype=np.float64)
    if q.shape != (len(e),) or not np.isfinite(q).all():
        raise FaceForgeError(f"need one finite quality per embedding ({len(e)}), got shape {q.shape}")
    s = e @ e.T
    adj = s >= np.minimum.outer(q, q) - margin - 1e-9  # equality up to rounding counts
    np.fill_diagonal(adj, False)
    return adj


def communities(adj: np.ndarray, method: str = "label_propagation", seed: int = 0) -> np.ndarray:
    """Community per node, 0 = largest (ties: the one holding the lowest index), −1 = isolated."""
    if method not in METHODS:
        raise FaceForgeError(f"unknown community method {method!r}; one of {', '.join(METHODS)}")
    n = len(adj)
    labels = np.full(n, -1, dtype=np.int64)
    connected = np.flatnonzero(adj.any(axis=1))
    if len(connected) == 0:
        return labels
    ii, jj = np.nonzero(np.triu(adj, 1))
    if method == "label_propagation":
        import networkx as nx
        g = nx.Graph()
        g.add_nodes_from(connected.tolist())
        g.add_edges_from(zip(ii.tolist(), jj.tolist()))
        for k, c in enumerate(nx.community.label_propagation_communities(g)):
            labels[list(c)] = k
    else:
        from faceforge.curate.cluster import leiden_membership
        labels[connected] = leiden_membership(n, ii, jj, seed=seed)[connected]
    return renumber_by_size(labels)


@dataclass
class IdentityFilter:
    """One identity's result: community per image (−1 isolated), the main community (0, or −1
    when every image is isolated), and which images are kept."""

    identity: str
    labels: np.ndarray
    main: int

    @property
    def keep(self) -> np.ndarray:
        return self.labels == self.main if self.main >= 0 else np.zeros(len(self.labels), bool)


def filter_identity(identity: str, embeddings: np.ndarray, quality: np.ndarray | None = None,
                    margin: float = 0.1, threshold: float | None = None, method: str = "label_propagation",
                    seed: int = 0) -> IdentityFilter:
    """Graph-filter one identity. Give `quality` (per image, in [0, 1]) or a fixed `threshold`."""
    e = np.asarray(embeddings)
    if (quality is None) == (threshold is None):
        raise FaceForgeError(f"{identity}: give per-image quality or a fixed threshold, not both or neither")
    q = np.full(len(e), threshold + margin) if quality is None else quality
    labels = communities(quality_edges(e, q, margin), method, seed) if len(e) else np.zeros(0, np.int64)
    return IdentityFilter(identity, labels, 0 if (labels == 0).any() else -1)


def identity_rows(identities) -> dict[str, np.ndarray]:
    """Row indices of each identity, keyed by name, from one sort (not a scan per identity)."""
    names, inverse = np.unique(np.asarray(identities).astype(str), return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    return dict(zip(names.tolist(), np.split(order, np.cumsum(np.bincount(inverse, minlength=len(names)))[:-1])))


def filter_dataset(embeddings: np.ndarray, identities, quality: np.ndarray | None = None, margin: float = 0.1,
                   threshold: float | None = None, method: str = "label_propagation", seed: int = 0,
                   eps: float = 0.3) -> dict[str, IdentityFilter]:
    """Every identity filtered on its own with one of FILTER_METHODS; results keyed by identity
    name, rows in input order. DBSCAN keeps its largest cluster; `elbow-dbscan` reads eps off
    each identity's k-distance elbow (identities under 3 images fall back to `eps`)."""
    if method not in FILTER_METHODS:
        raise FaceForgeError(f"unknown filter method {method!r}; one of {', '.join(FILTER_METHODS)}")
    e = np.asarray(embeddings)
    if len(identities) != len(e):
        raise FaceForgeError(f"{len(e)} embeddings but {len(identities)} identities")
    q = None if quality is None else np.asarray(quality, dtype=np.float64)
    out = {}
    for name, rows in identity_rows(identities).items():
        if method in METHODS:
            out[name] = filter_identity(name, e[rows], None if q is None else q[rows], margin, threshold, method, seed)
            continue
        eps_i = elbow_eps(e[rows]) if method == "elbow-dbscan" and len(rows) >= 3 else eps
        labels = dbscan_labels(e[rows], eps=eps_i)
        out[name] = IdentityFilter(name, labels, 0 if (labels == 0).any() else -1)
    return out
