"""Who is this? The majority decision over a gallery's top-K hits, with a threshold that comes
from an evaluation at a target false-positive rate (or is given), "unknown" below it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceforge.core.errors import FaceForgeError
from faceforge.evaluate.compare import read_result, tpr_tables
from faceforge.evaluate.identification import topk_decision
from faceforge.search.gallery import Gallery, Hit

UNKNOWN = "unknown"


@dataclass
class Decision:
    """identity is UNKNOWN when the rule makes no decision or its score is below threshold;
    `candidate` is what the rule chose before the threshold."""
    identity: str
    score: float | None
    accepted: bool
    candidate: str | None
    hits: list[Hit]

    def to_dict(self, with_hits: bool = True) -> dict:
        d = {"identity": self.identity, "score": self.score, "accepted": self.accepted, "candidate": self.candidate}
        if with_hits:
            d["hits"] = [{"identity": h.identity, "score": h.score, "path": h.path, "quality": h.quality}
                         for h in self.hits]
        return d


def decide(hits: list[Hit], k: int, threshold: float | None) -> Decision:
    """Majority identity among the top k (mean of its ⌊k/2⌋ best scores for k > 1, the top
    score for k = 1), accepted when score ≥ threshold (always, when threshold is None)."""
    ident, score = topk_decision([h.identity for h in hits], [h.score for h in hits], k)
    ok = ident is not None and (threshold is None or score >= threshold)
    return Decision(ident if ok else UNKNOWN, score, bool(ok), ident, hits[:k])


def identify(gallery: Gallery, vectors: np.ndarray, k: int = 1, threshold: float | None = None,
             min_quality: float | None = None, model: str | None = None) -> list[Decision]:
    """One decision per query row (a batch is searched in one call)."""
    return [decide(h, k, threshold) for h in gallery.search(vectors, k, min_quality=min_quality, model=model)]


def threshold_from_eval(path: str | Path, fpr: float, method: str | None = None) -> float:
    """The decision threshold at `fpr` from a result JSON of `faceforge eval` (or a benchmark).
    Evaluation accepts score > t; the decision accepts score ≥ threshold, so this returns the
    next float above t and both admit the same pairs."""
    tables = tpr_tables(read_result(path))
    if not tables:
        raise FaceForgeError("no 'tpr_at_fpr' table in this file", path)
    if method is None:
        if len(tables) > 1:
            raise FaceForgeError(f"several results in this file, choose one with --method: {sorted(tables)}", path)
        table = next(iter(tables.values()))
    elif method in tables:
        table = tables[method]
    else:
        raise FaceForgeError(f"no result named '{method}' (found {sorted(tables)})", path)
    row = table.get(f"{fpr:g}")
    if row is None:
        raise FaceForgeError(f"FPR {fpr:g} was not evaluated (found {sorted(table, key=float)})", path)
    t = row.get("threshold")
    if t is None or not np.isfinite(t):
        raise FaceForgeError(f"no threshold at FPR {fpr:g}: too few negative pairs were evaluated", path)
    return float(np.nextafter(np.float64(t), np.inf))
