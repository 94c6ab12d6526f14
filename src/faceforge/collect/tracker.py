"""A compact face tracker: two-stage association (ByteTrack) with appearance (BoT-SORT).

Each track keeps its last box, a constant velocity from its last two boxes, and a running
mean of its unit embeddings. In each processed frame:

1. confident detections (score ≥ `high`) are matched to every live track by the Hungarian
   algorithm on cost = ½(1 − IoU with the track's predicted box) + ½(1 − cosine with its
   embedding); a pair is allowed only if the faces look alike (cosine ≥ `min_cosine`) and
   either overlap (IoU ≥ `min_iou`) or look very alike (cosine ≥ `reid_cosine`, which
   re-finds a person after a cut or an occlusion);
2. the remaining weaker detections (`low` ≤ score < `high`) are matched by IoU alone
   (≥ 0.5) to tracks still unmatched that were seen in the previous processed frame, so a
   face that blurs for a moment keeps its track;
3. unmatched confident detections start new tracks; a track not seen for more than
   `buffer` frames ends.

Linking faces into tracklets lets the collectors decide per tracklet, so one stray face of
a stranger cannot join a person's folder on its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from faceforge.core.extras import require


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` (N×4, x1 y1 x2 y2) with every box of `b` (M×4)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


@dataclass
class Track:
    id: int
    box: np.ndarray
    embedding: np.ndarray
    frame: int
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    hits: int = 1

    def predicted(self, frame: int) -> np.ndarray:
        return self.box + self.velocity * (frame - self.frame)

    def update(self, box: np.ndarray, embedding: np.ndarray, frame: int) -> None:
        self.velocity = (box - self.box) / max(frame - self.frame, 1)
        self.box, self.frame, self.hits = box, frame, self.hits + 1
        mean = self.embedding * (self.hits - 1) + embedding
        self.embedding = mean / max(np.linalg.norm(mean), 1e-12)

    def to_dict(self) -> dict:
        return {"id": self.id, "box": self.box.tolist(), "embedding": self.embedding.tolist(), "frame": self.frame,
                "velocity": self.velocity.tolist(), "hits": self.hits}

    @classmethod
    def from_dict(cls, d: dict) -> "Track":
        return cls(int(d["id"]), np.array(d["box"]), np.array(d["embedding"]), int(d["frame"]),
                   np.array(d["velocity"]), int(d["hits"]))


@dataclass
class Tracker:
    high: float = 0.6
    low: float = 0.3
    min_iou: float = 0.1
    min_cosine: float = 0.2
    reid_cosine: float = 0.5
    buffer: int = 30          # frames a track survives unseen
    tracks: list[Track] = field(default_factory=list)
    next_id: int = 0
    last_frame: int | None = None

    def update(self, frame: int, boxes: np.ndarray, scores: np.ndarray, embeddings: np.ndarray) -> list[int]:
        """Track ids of this frame's detections (−1 for a weak detection no track took)."""
        lsa = require("scipy.optimize", "collect", "the tracker's assignment").linear_sum_assignment
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        emb = np.asarray(embeddings, np.float64).reshape(len(boxes), -1) if len(boxes) else np.zeros((0, 1))
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        self.tracks = [t for t in self.tracks if frame - t.frame <= self.buffer]
        ids = np.full(len(boxes), -1, np.int64)
        strong = np.flatnonzero(scores >= self.high)
        weak = np.flatnonzero((scores >= self.low) & (scores < self.high))
        free = list(range(len(self.tracks)))
        if len(strong) and free:
            pred = np.stack([self.tracks[t].predicted(frame) for t in free])
            iou = iou_matrix(boxes[strong], pred)
            cos = emb[strong] @ np.stack([self.tracks[t].embedding for t in free]).T
            cost = 0.5 * (1 - iou) + 0.5 * (1 - cos)
            allowed = (cos >= self.min_cosine) & ((iou >= self.min_iou) | (cos >= self.reid_cosine))
            cost = np.where(allowed, cost, 1e6)
            for r, c in zip(*lsa(cost)):
                if allowed[r, c]:
                    ids[strong[r]] = self._take(free[c], boxes[strong[r]], emb[strong[r]], frame)
            free = [t for t in free if self.tracks[t].id not in set(ids.tolist())]
        recent = [t for t in free if self.tracks[t].frame == self.last_frame]
        if len(weak) and recent:
            iou = iou_matrix(boxes[weak], np.stack([self.tracks[t].predicted(frame) for t in recent]))
            cost = np.where(iou >= 0.5, 1 - iou, 1e6)
            for r, c in zip(*lsa(cost)):
                if iou[r, c] >= 0.5:
                    ids[weak[r]] = self._take(recent[c], boxes[weak[r]], emb[weak[r]], frame)
        for d in strong:
            if ids[d] < 0:
                self.tracks.append(Track(self.next_id, boxes[d], emb[d], frame))
                ids[d] = self.next_id
                self.next_id += 1
        self.last_frame = frame
        return ids.tolist()

    def _take(self, t: int, box: np.ndarray, embedding: np.ndarray, frame: int) -> int:
        self.tracks[t].update(box, embedding, frame)
        return self.tracks[t].id

    def state(self) -> dict:
        """Everything needed to continue tracking after a resume."""
        return {"tracks": [t.to_dict() for t in self.tracks], "next_id": self.next_id, "last_frame": self.last_frame}

    def restore(self, state: dict) -> None:
        self.tracks = [Track.from_dict(d) for d in state["tracks"]]
        self.next_id, self.last_frame = int(state["next_id"]), state["last_frame"]
