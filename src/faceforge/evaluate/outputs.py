"""Writing an evaluation's results: JSON for machines (and `faceforge eval compare`), CSV
for spreadsheets, PNG for people. Every file is written atomically."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from faceforge.core.files import atomic_write_json, atomic_write_text
from faceforge.evaluate.plots import plot_roc, plot_score_distributions, thin_roc
from faceforge.evaluate.verification import RocCurve


def _csv(rows: list[list]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def json_ready(obj):
    """NaN and infinity become null (JSON has neither); arrays become lists."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if hasattr(obj, "tolist"):
        return json_ready(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_tpr_table(path: Path, table: dict[str, dict]) -> None:
    atomic_write_text(path, _csv([["fpr", "tpr", "threshold"]] +
                                 [[k, v["tpr"], v["threshold"]] for k, v in table.items()]))


def write_verification(out: str | Path, name: str, report: dict, curve: RocCurve) -> list[Path]:
    """metrics.json, tpr_at_fpr.csv, roc.csv (log-thinned), roc.png, scores.png."""
    out = Path(out)
    files = [out / n for n in ("metrics.json", "tpr_at_fpr.csv", "roc.csv", "roc.png", "scores.png")]
    atomic_write_json(files[0], json_ready({"name": name, **report}))
    write_tpr_table(files[1], report["tpr_at_fpr"])
    fpr, tpr = thin_roc(curve)
    atomic_write_text(files[2], _csv([["fpr", "tpr"], *zip(fpr.tolist(), tpr.tolist())]))
    plot_roc({name: curve}, files[3], f"ROC: {name}")
    plot_score_distributions({name: report["distributions"]}, files[4], f"scores: {name}")
    return files
