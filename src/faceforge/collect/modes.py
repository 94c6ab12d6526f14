"""The three ways to gather identities from a stream of faces.

`one`: one person from a reference face (the collecting reference's version one). Every
`every` new faces, a graph over the faces and the reference joins two faces when their cosine
exceeds the model's threshold; a face is *core* when it has at least max(1, ⌊0.01·n⌋)
neighbours; the person is what a search from the reference reaches, expanding only through
core faces, so a single look-alike face between two people cannot bridge them. The DBSCAN
alternative takes its eps from the k-distance elbow of the faces, never a fixed value.
It stops once the pose bins are full: frontal (|yaw| ≤ 20°) ≥ 30, three-quarter (20–40°)
≥ 50 and side (40–50°) ≥ 2 by default. Faces under the sharpness gate are dropped, unless a
softer second gate is given: faces between the two are *leaves*, reached by a direct edge but
never expanding, because soft faces of different people resemble one another (a small, soft
person in a clip is kept without letting soft strangers bridge into their folder).

`many`: N people at once (version two). Faces outside |yaw| ≤ 35°, |pitch| ≤ 25° or below the
sharpness gate are not used; once there are 9·N faces, DBSCAN (cosine; eps from the elbow
unless given; min_samples 5) runs every 20 new faces. A cluster is *valid* with ≥ 9 faces
and ≥ 3 in each of front (|yaw| ≤ 15°), left (15° < yaw ≤ 35°) and right (−35° ≤ yaw < −15°).
It stops when N clusters are valid. Beyond the reference, clusters whose templates (the
normalised mean of their faces) reach the model's same-person threshold are merged before
validity is judged: DBSCAN at the elbow eps splits one person seen in two shots (other light,
other pose) into two dense groups, and the reference's rule then counts that person twice while
neither half has every pose bin.

`all`: everyone in a recording, N unknown: each tracklet's mean embedding is a node, a kNN
graph at the model's threshold is cut into communities by Leiden (faceforge.curate).

In every mode only usable faces count (sharp, and within the mode's pose limits: |yaw| < 50°
for `one` and `all`), and they vote by tracklet: a tracklet's usable faces all go to the
identity more than half of them were given, or to none, so a stranger's stray face is
dropped unless their whole tracklet matches.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from faceforge.core.errors import FaceForgeError
from faceforge.core.vectors import unit_rows
from faceforge.curate.dbscan import dbscan_labels, elbow_eps, renumber_by_size


@dataclass(frozen=True)
class PoseBins:
    """How many faces each yaw range needs: (lower |yaw|, upper |yaw|, count) per bin."""

    bins: tuple[tuple[float, float, int], ...] = ((0.0, 20.0, 30), (20.0, 40.0, 50), (40.0, 50.0, 2))

    def counts(self, yaws: np.ndarray) -> list[int]:
        a = np.abs(np.asarray(yaws, np.float64))
        return [int(np.sum((a >= lo if i == 0 else a > lo) & (a <= hi if i < len(self.bins) - 1 else a < hi)))
                for i, (lo, hi, _) in enumerate(self.bins)]

    def full(self, yaws: np.ndarray) -> bool:
        return all(c >= need for c, (_, _, need) in zip(self.counts(yaws), self.bins))


def graph_reach(embeddings: np.ndarray, start: int, threshold: float, core_share: float = 0.01,
                leaves: np.ndarray | None = None) -> np.ndarray:
    """Faces reached from face `start` through edges cosine > threshold, expanding only
    through core faces (degree ≥ max(1, ⌊core_share·n⌋)) that are not `leaves` (a mask);
    the start always expands."""
    e = unit_rows(embeddings)
    n = len(e)
    adj = (e @ e.T) > threshold
    np.fill_diagonal(adj, False)
    degree = adj.sum(axis=1)
    core = degree >= max(1, int(core_share * n))
    if leaves is not None:
        core &= ~np.asarray(leaves, bool)
    reached = np.zeros(n, bool)
    reached[start] = True
    queue = deque([start])
    while queue:
        i = queue.popleft()
        if i != start and not core[i]:
            continue
        for j in np.flatnonzero(adj[i] & ~reached):
            reached[j] = True
            queue.append(j)
    return reached


def valid_cluster(yaws: np.ndarray, min_faces: int = 9, per_bin: int = 3) -> bool:
    """≥ min_faces faces and ≥ per_bin each in front (|yaw| ≤ 15), left (15 < yaw ≤ 35) and
    right (−35 ≤ yaw < −15)."""
    y = np.asarray(yaws, np.float64)
    front = np.sum(np.abs(y) <= 15)
    left = np.sum((y > 15) & (y <= 35))
    right = np.sum((y >= -35) & (y < -15))
    return len(y) >= min_faces and min(front, left, right) >= per_bin


def vote_by_tracklet(labels: np.ndarray, tracks: np.ndarray) -> np.ndarray:
    """Each face gets the label most faces of its tracklet have (−1 = none wins: a label
    must hold more than half the tracklet); faces without a tracklet (−1) keep their own."""
    labels, tracks = np.asarray(labels), np.asarray(tracks)
    out = labels.copy()
    for t in np.unique(tracks[tracks >= 0]):
        m = tracks == t
        values, counts = np.unique(labels[m], return_counts=True)
        best = int(np.argmax(counts))
        out[m] = values[best] if counts[best] * 2 > m.sum() else -1
    return out


def gated_vote(labels: np.ndarray, tracks: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """vote_by_tracklet among the usable faces only; the others get −1 (they neither vote
    nor join: a blurred or profile face is not collected)."""
    out = np.full(len(labels), -1, np.int64)
    idx = np.flatnonzero(usable)
    out[idx] = vote_by_tracklet(np.asarray(labels)[idx], np.asarray(tracks)[idx])
    return out


def merge_clusters(embeddings: np.ndarray, labels: np.ndarray, threshold: float) -> np.ndarray:
    """Clusters (labels ≥ 0; −1 stays) joined while two templates reach `threshold` cosine,
    the most similar pair first and templates recomputed after each join (a chain of weak
    matches cannot pull in a third person whose template misses the merged one); renumbered
    by size."""
    e = unit_rows(embeddings)
    out = np.asarray(labels, np.int64).copy()
    while True:
        ids = np.unique(out[out >= 0])
        if len(ids) < 2:
            break
        t = unit_rows(np.stack([e[out == c].mean(axis=0) for c in ids]))
        sims = t @ t.T
        np.fill_diagonal(sims, -np.inf)
        i, j = np.unravel_index(int(np.argmax(sims)), sims.shape)
        if sims[i, j] < threshold:
            break
        out[out == ids[j]] = ids[i]
    return renumber_by_size(out)


@dataclass
class FaceLog:
    """The faces seen so far, in arrival order."""

    embeddings: list[np.ndarray] = field(default_factory=list)
    yaws: list[float] = field(default_factory=list)
    pitches: list[float] = field(default_factory=list)
    sharp: list[bool] = field(default_factory=list)
    tracks: list[int] = field(default_factory=list)
    soft: list[bool] = field(default_factory=list)  # under the gate but past the softer one (mode one)

    def add(self, embedding: np.ndarray, yaw: float, pitch: float, sharp: bool, track: int,
            soft: bool = False) -> None:
        self.embeddings.append(np.asarray(embedding, np.float32))
        self.yaws.append(float(yaw))
        self.pitches.append(float(pitch))
        self.sharp.append(bool(sharp))
        self.tracks.append(int(track))
        self.soft.append(bool(soft) and not sharp)

    def __len__(self) -> int:
        return len(self.embeddings)


class OneCollector:
    """Mode `one`: labels are 0 for the person's faces, −1 for the rest."""

    def __init__(self, reference: np.ndarray, threshold: float, every: int = 50, method: str = "graph",
                 stop: PoseBins | None = PoseBins(), max_yaw: float = 50.0) -> None:
        if method not in ("graph", "dbscan"):
            raise FaceForgeError(f"unknown method {method!r} (graph | dbscan)")
        self.reference, self.threshold, self.every, self.method, self.stop = reference, threshold, every, method, stop
        self.max_yaw = max_yaw
        self.log = FaceLog()
        self.labels = np.zeros(0, np.int64)
        self.eps: float | None = None
        self._seen_at_update = 0

    def add(self, embedding, yaw, pitch, sharp, track, soft: bool = False) -> None:
        """One face; `soft`: under the sharpness gate but past the softer one (a graph leaf)."""
        self.log.add(embedding, yaw, pitch, sharp, track, soft)
        if len(self.log) - self._seen_at_update >= self.every:
            self.update()

    def update(self) -> None:
        self._seen_at_update = n = len(self.log)
        if n == 0:
            return
        soft = np.array(self.log.soft, bool) & (self.method == "graph")  # DBSCAN has no leaves
        usable = (np.array(self.log.sharp, bool) | soft) & (np.abs(np.array(self.log.yaws)) < self.max_yaw)
        emb = np.vstack([self.reference[None], np.stack(self.log.embeddings)])
        idx = np.flatnonzero(np.r_[True, usable])  # the reference, then the usable faces
        member = np.zeros(n + 1, bool)
        if self.method == "graph":
            member[idx] = graph_reach(emb[idx], 0, self.threshold, leaves=np.r_[False, soft][idx])
        elif len(idx) >= 3:
            self.eps = elbow_eps(emb[idx])
            lab = dbscan_labels(emb[idx], self.eps, min_samples=2)
            member[idx] = (lab == lab[0]) & (lab[0] >= 0)
        self.labels = gated_vote(np.where(member[1:], 0, -1), np.array(self.log.tracks), usable)

    @property
    def done(self) -> bool:
        if self.stop is None or not len(self.labels):
            return False
        return self.stop.full(np.array(self.log.yaws)[:len(self.labels)][self.labels == 0])  # as of the last update


class ManyCollector:
    """Mode `many`: labels 0..k−1 for clusters (valid ones first), −1 for the rest."""

    def __init__(self, people: int, every: int = 20, eps: float | None = None, min_samples: int = 5,
                 max_yaw: float = 35.0, max_pitch: float = 25.0, merge_threshold: float | None = None) -> None:
        """`merge_threshold`: the same-person cosine at which clusters' templates are merged
        (None: never, the reference)."""
        if people < 1:
            raise FaceForgeError(f"--people must be ≥ 1, got {people}")
        self.people, self.every, self.fixed_eps, self.min_samples = people, every, eps, min_samples
        self.merge_threshold = merge_threshold
        self.max_yaw, self.max_pitch = max_yaw, max_pitch
        self.log = FaceLog()
        self.labels = np.zeros(0, np.int64)
        self.valid: list[int] = []
        self.eps: float | None = eps
        self._used_at_update = 9 * people - every  # the first DBSCAN runs at 9·N usable faces

    def usable(self) -> np.ndarray:
        y, p = np.abs(np.array(self.log.yaws)), np.abs(np.array(self.log.pitches))
        return np.flatnonzero((y <= self.max_yaw) & (p <= self.max_pitch) & np.array(self.log.sharp, bool))

    def add(self, embedding, yaw, pitch, sharp, track) -> None:
        self.log.add(embedding, yaw, pitch, sharp, track)
        used = len(self.usable())
        if used >= 9 * self.people and used - self._used_at_update >= self.every:
            self.update()

    def update(self) -> None:
        idx = self.usable()
        self._used_at_update = len(idx)
        labels = np.full(len(self.log), -1, np.int64)
        if len(idx) >= max(3, self.min_samples):
            emb = np.stack(self.log.embeddings)[idx]
            self.eps = self.fixed_eps if self.fixed_eps is not None else elbow_eps(emb)
            labels[idx] = dbscan_labels(emb, self.eps, self.min_samples)
        usable = np.zeros(len(self.log), bool)
        usable[idx] = True
        labels = gated_vote(labels, np.array(self.log.tracks), usable)
        if self.merge_threshold is not None:
            labels = merge_clusters(np.stack(self.log.embeddings), labels, self.merge_threshold)
        yaws = np.array(self.log.yaws)
        clusters = [c for c in np.unique(labels) if c >= 0]
        valid = [c for c in clusters if valid_cluster(yaws[labels == c])]
        order = valid + [c for c in clusters if c not in valid]  # valid first, then by size (as numbered)
        remap = {c: i for i, c in enumerate(order)}
        self.labels = np.array([remap.get(int(c), -1) for c in labels], np.int64)
        self.valid = list(range(len(valid)))

    @property
    def done(self) -> bool:
        return len(self.valid) >= self.people


def cluster_everyone(embeddings: np.ndarray, tracks: np.ndarray, threshold: float, seed: int = 0,
                     min_faces: int = 3) -> np.ndarray:
    """Mode `all`: one node per tracklet (its mean unit embedding; a face without a tracklet
    is its own node), Leiden communities of the kNN graph cut at `threshold`, a node no
    community took is an identity of its own; identities of fewer than `min_faces` faces are
    dropped (−1); labels per face numbered by size."""
    from faceforge.curate.cluster import cluster_embeddings
    tracks = np.asarray(tracks)
    e = unit_rows(embeddings)
    keys = [("t", int(t)) if t >= 0 else ("f", i) for i, t in enumerate(tracks)]
    nodes = sorted(set(keys))
    index = {k: i for i, k in enumerate(nodes)}
    node_of = np.array([index[k] for k in keys])
    means = unit_rows(np.stack([e[node_of == i].mean(axis=0) for i in range(len(nodes))]))
    node_labels = np.zeros(1, np.int64) if len(nodes) == 1 else np.asarray(
        cluster_embeddings(means, method="leiden", cutoff=threshold, k=min(10, len(nodes) - 1), seed=seed))
    alone = np.flatnonzero(node_labels < 0)  # a person seen in one tracklet only is still a person
    node_labels[alone] = node_labels.max() + 1 + np.arange(len(alone))
    labels = node_labels[node_of]
    sizes = np.bincount(labels)
    labels = np.where(sizes[labels] >= min_faces, labels, -1)  # a face or two alone: noise, not an identity
    return renumber_by_size(labels)
