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

The reference keeps only the largest community and calls the rest noise, which splits an
identity with two looks (young and old photos, another hair colour) and throws the hardest
genuine photos away. Rule `community` decides per group instead: each smaller
community, and each isolated image, is compared with the main community as a template (the
normalised mean of its normalised embeddings); a group whose template reaches the model's
same-person threshold is the same person looking different — kept, and listed apart — and
only a group that looks like someone else is noise. Rule `reference` (the default until the
benchmark on planted intruders says otherwise) is the original.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faceforge.core.errors import FaceForgeError
from faceforge.core.vectors import unit_rows
from faceforge.curate.dbscan import dbscan_labels, elbow_eps, renumber_by_size
from faceforge.models.cards import SFACE

METHODS = ("label_propagation", "leiden")
RULES = ("community", "reference")  # what happens to the groups outside the main community
EDGES = ("min", "product")          # S_ij ≥ min(q_i, q_j) − margin, or ≥ q_i·q_j − margin
KEPT, LOOK, OTHER = 0, 1, 2         # outcome per image: main community, same person another look, other person
OUTCOMES = ("kept", "different look", "other person")
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


def quality_edges(embeddings: np.ndarray, quality: np.ndarray, margin: float = 0.1, edge: str = "min") -> np.ndarray:
    """N×N boolean adjacency, no self-loops (vectorised; one identity's images at a time, so
    N×N stays small). `min`: S_ij ≥ min(q_i, q_j) − margin, the reference. `product`:
    S_ij ≥ q_i·q_j − margin — q is a predicted cosine to the identity's centre, and two faces
    at cosines q_i and q_j from a centre meet at about q_i·q_j, so this is the bar the
    predictions actually imply (the reference's bar is higher for every pair of good faces)."""
    if edge not in EDGES:
        raise FaceForgeError(f"unknown edge rule {edge!r}; one of {', '.join(EDGES)}")
    e = unit_rows(embeddings)
    q = np.asarray(quality, dtype=np.float64)
    if q.shape != (len(e),) or not np.isfinite(q).all():
        raise FaceForgeError(f"need one finite quality per embedding ({len(e)}), got shape {q.shape}")
    s = e @ e.T
    bar = np.minimum.outer(q, q) if edge == "min" else np.multiply.outer(q, q)
    adj = s >= bar - margin - 1e-9  # equality up to rounding counts
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
    when every image is isolated), the outcome per image (KEPT, LOOK, OTHER) and, for images
    outside the main community, the cosine of their group's template to the main template
    (NaN inside it)."""

    identity: str
    labels: np.ndarray
    main: int
    outcome: np.ndarray | None = None
    group_score: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.outcome is None:  # the reference: the main community is kept, the rest is noise
            self.outcome = np.where((self.labels == self.main) & (self.main >= 0), KEPT, OTHER)
        if self.group_score is None:
            self.group_score = np.full(len(self.labels), np.nan)

    @property
    def keep(self) -> np.ndarray:
        return self.outcome != OTHER


def _template(e: np.ndarray) -> np.ndarray:
    t = e.mean(axis=0)
    return t / max(float(np.linalg.norm(t)), 1e-12)


def leave_one_out_scores(embeddings: np.ndarray) -> np.ndarray:
    """Each image's cosine to the template of all the other images (NaN for a lone image)."""
    e = unit_rows(embeddings)
    if len(e) < 2:
        return np.full(len(e), np.nan)
    rest = e.sum(axis=0) - e
    return np.einsum("ij,ij->i", e, rest) / np.maximum(np.linalg.norm(rest, axis=1), 1e-12)


def decide_groups(embeddings: np.ndarray, labels: np.ndarray, same_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(outcome, group score) per image under rule `community`. Every community but the main
    one (0), and every isolated image, is a group; its template's cosine to the main
    template decides: ≥ same_threshold → LOOK (kept), else OTHER. With no main community
    (every image isolated) each image is scored against the template of all the others."""
    e = unit_rows(embeddings)
    n = len(e)
    outcome, score = np.full(n, KEPT), np.full(n, np.nan)
    if n == 0:
        return outcome, score
    if not (labels == 0).any():
        score = leave_one_out_scores(e)
        outcome[:] = np.where(score >= same_threshold, LOOK, OTHER)
        outcome[np.isnan(score)] = KEPT  # a lone image has nothing to disagree with
        return outcome, score
    main = _template(e[labels == 0])
    groups = [np.flatnonzero(labels == c) for c in range(1, int(labels.max()) + 1)]
    groups += [np.array([i]) for i in np.flatnonzero(labels < 0)]
    for rows in groups:
        if len(rows):
            score[rows] = float(_template(e[rows]) @ main)
            outcome[rows] = LOOK if score[rows[0]] >= same_threshold else OTHER
    return outcome, score


def filter_identity(identity: str, embeddings: np.ndarray, quality: np.ndarray | None = None,
                    margin: float = 0.1, threshold: float | None = None, method: str = "label_propagation",
                    seed: int = 0, rule: str = "reference", same_threshold: float | None = None,
                    edge: str = "min") -> IdentityFilter:
    """Graph-filter one identity. Give `quality` (per image, in [0, 1]) or a fixed `threshold`;
    rule `community` needs the model's `same_threshold` (a cosine)."""
    e = np.asarray(embeddings)
    if (quality is None) == (threshold is None):
        raise FaceForgeError(f"{identity}: give per-image quality or a fixed threshold, not both or neither")
    q = np.full(len(e), threshold + margin) if quality is None else quality
    labels = communities(quality_edges(e, q, margin, edge), method, seed) if len(e) else np.zeros(0, np.int64)
    return _decided(identity, e, labels, rule, same_threshold)


def _decided(identity: str, e: np.ndarray, labels: np.ndarray, rule: str, same_threshold: float | None
             ) -> IdentityFilter:
    if rule not in RULES:
        raise FaceForgeError(f"unknown rule {rule!r}; one of {', '.join(RULES)}")
    main = 0 if (labels == 0).any() else -1
    if rule == "reference":
        return IdentityFilter(identity, labels, main)
    if same_threshold is None:
        raise FaceForgeError(f"{identity}: rule 'community' needs the model's same-person threshold")
    outcome, score = decide_groups(e, labels, same_threshold)
    return IdentityFilter(identity, labels, main, outcome, score)


def identity_rows(identities) -> dict[str, np.ndarray]:
    """Row indices of each identity, keyed by name, from one sort (not a scan per identity)."""
    names, inverse = np.unique(np.asarray(identities).astype(str), return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    return dict(zip(names.tolist(), np.split(order, np.cumsum(np.bincount(inverse, minlength=len(names)))[:-1])))


def filter_dataset(embeddings: np.ndarray, identities, quality: np.ndarray | None = None, margin: float = 0.1,
                   threshold: float | None = None, method: str = "label_propagation", seed: int = 0,
                   eps: float = 0.3, rule: str = "reference", same_threshold: float | None = None,
                   edge: str = "min") -> dict[str, IdentityFilter]:
    """Every identity filtered on its own with one of FILTER_METHODS; results keyed by identity
    name, rows in input order. DBSCAN's largest cluster is the main community; `elbow-dbscan`
    reads eps off each identity's k-distance elbow (identities under 3 images fall back to
    `eps`). `rule` decides the other groups (module doc) whatever found them."""
    if method not in FILTER_METHODS:
        raise FaceForgeError(f"unknown filter method {method!r}; one of {', '.join(FILTER_METHODS)}")
    e = np.asarray(embeddings)
    if len(identities) != len(e):
        raise FaceForgeError(f"{len(e)} embeddings but {len(identities)} identities")
    q = None if quality is None else np.asarray(quality, dtype=np.float64)
    out = {}
    for name, rows in identity_rows(identities).items():
        if method in METHODS:
            out[name] = filter_identity(name, e[rows], None if q is None else q[rows], margin, threshold, method,
                                        seed, rule, same_threshold, edge)
            continue
        eps_i = elbow_eps(e[rows]) if method == "elbow-dbscan" and len(rows) >= 3 else eps
        out[name] = _decided(name, e[rows], dbscan_labels(e[rows], eps=eps_i), rule, same_threshold)
    return out
