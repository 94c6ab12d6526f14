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


def per_comparison_fpr(fpir: float, gallery_size: int) -> float:
    """The 1:1 false-positive rate p at which a stranger compared with `gallery_size` faces
    is wrongly named with probability `fpir`: 1 - (1 - p)^N = fpir (about fpir / N).
    Scores of one stranger against different faces are not independent, so this errs on
    the safe side: the measured rate is at most about fpir."""
    if not 0 < fpir < 1 or gallery_size < 1:
        raise FaceForgeError(f"need 0 < FPIR < 1 and a gallery of at least one face (got {fpir:g}, {gallery_size})")
    return float(-np.expm1(np.log1p(-fpir) / gallery_size))


def _threshold_at(table: dict, rate: float, what: str, path: str | Path, missing: str = "was not evaluated") -> float:
    """The decision threshold of a table's row at `rate`. Evaluation accepts score > t; the
    decision accepts score ≥ threshold, so this is the next float above t: both admit the
    same pairs."""
    row = table.get(f"{rate:g}")
    if row is None:
        raise FaceForgeError(f"{what} {rate:g} {missing} (found {sorted(table, key=float)})", path)
    t = row.get("threshold")
    if t is None or not np.isfinite(t):
        raise FaceForgeError(f"no threshold at {what} {rate:g}: too few negative pairs were evaluated", path)
    return float(np.nextafter(np.float64(t), np.inf))


def _one_table(tables: dict[str, dict], method: str | None, path: str | Path) -> dict:
    if method is None:
        if len(tables) > 1:
            raise FaceForgeError(f"several results in this file, choose one with --method: {sorted(tables)}", path)
        return next(iter(tables.values()))
    if method not in tables:
        raise FaceForgeError(f"no result named '{method}' (found {sorted(tables)})", path)
    return tables[method]


def gallery_threshold(path: str | Path, fpir: float, gallery_size: int, method: str | None = None
                      ) -> tuple[float, str]:
    """(threshold, how it was chosen) for naming people from a gallery of `gallery_size`
    faces so that a stranger gets a name with probability `fpir` (the false-positive
    identification rate). From an open-set identification result (`faceforge eval ident`)
    the threshold at that FPIR is taken as measured. From a 1:1 verification result it is
    not the threshold at FPR = fpir — a stranger is compared with every face, so that would
    name about N·fpir of them — but the one at the per-comparison rate fpir / N
    (per_comparison_fpr): the largest evaluated FPR not above it, or an error saying which
    FPR the evaluation must reach."""
    result = read_result(path)
    ident = tpr_tables(result, key="tpir_at_fpir")
    if ident and method is None:
        if len(ident) > 1:
            raise FaceForgeError("several identification results in this file", path)
        return _threshold_at(next(iter(ident.values())), fpir, "FPIR", path, "was not measured"), \
            f"identification result at FPIR {fpir:g}"
    need = per_comparison_fpr(fpir, gallery_size)
    tables = tpr_tables(result)
    if not tables:
        raise FaceForgeError("no 'tpr_at_fpr' or 'tpir_at_fpir' table in this file", path)
    table = _one_table(tables, method, path)
    usable = [float(k) for k, row in table.items()
              if float(k) <= need * (1 + 1e-9) and row.get("threshold") is not None and np.isfinite(row["threshold"])]
    if not usable:
        raise FaceForgeError(
            f"a gallery of {gallery_size} faces at FPIR {fpir:g} needs a 1:1 threshold at FPR {need:.3g}, and the "
            f"smallest FPR evaluated with a threshold is {min(map(float, table)):g}: evaluate more negative pairs, or "
            "give an identification result (faceforge eval ident)", path)
    return _threshold_at(table, max(usable), "FPR", path), \
        f"1:1 result at FPR {max(usable):g} (≤ FPIR {fpir:g} / {gallery_size} faces)"


def threshold_from_eval(path: str | Path, fpr: float, method: str | None = None) -> float:
    """The decision threshold at `fpr` from a result JSON of `faceforge eval` (or a benchmark),
    the next float above the evaluated one (_threshold_at). For 1:1 decisions; a gallery's is
    gallery_threshold."""
    tables = tpr_tables(read_result(path))
    if not tables:
        raise FaceForgeError("no 'tpr_at_fpr' table in this file", path)
    return _threshold_at(_one_table(tables, method, path), fpr, "FPR", path)
