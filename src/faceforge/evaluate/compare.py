"""Side-by-side TPR@FPR tables from result JSON files: rows = methods, columns = FPRs, the
layout verification papers and the reference documents use."""
from __future__ import annotations

import json
from pathlib import Path

from faceforge.core.errors import FaceForgeError


def tpr_tables(obj, prefix: str = "", key: str = "tpr_at_fpr") -> dict[str, dict[str, dict]]:
    """Every `key` table found in a result ({rate: {'tpr', 'threshold'}}; `tpir_at_fpir` for
    open-set identification), named by its 'method'/'name' field or by where it sits (e.g.
    'modes/N0D0F1')."""
    tables: dict[str, dict[str, dict]] = {}
    if isinstance(obj, dict):
        table = obj.get(key)
        if isinstance(table, dict):
            label = obj.get("method") or obj.get("name") or prefix.strip("/") or "result"
            tables[str(label)] = {k: (v if isinstance(v, dict) else {"tpr": v}) for k, v in table.items()}
        for k, v in obj.items():
            if k != key:
                tables.update(tpr_tables(v, f"{prefix}/{k}", key))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            tables.update(tpr_tables(v, f"{prefix}/{i}", key))
    return tables


def tpr_rows(obj) -> dict[str, dict[str, float | None]]:
    """The TPR column of every table tpr_tables finds."""
    return {name: {k: v.get("tpr") for k, v in t.items()} for name, t in tpr_tables(obj).items()}


def read_result(path: str | Path) -> dict:
    f = Path(path)
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError) as exc:
        raise FaceForgeError(f"cannot read result JSON: {exc}", f) from None


def compare(files: list[str | Path], fprs: list[str] | None = None) -> tuple[list[str], list[tuple[str, list]]]:
    """(column FPRs, [(row name, TPRs or None)]) over all files; row names get the file's
    stem when several files are compared."""
    rows: list[tuple[str, dict]] = []
    for f in map(Path, files):
        found = tpr_rows(read_result(f))
        if not found:
            raise FaceForgeError("no 'tpr_at_fpr' table in this file", f)
        for name, table in found.items():
            rows.append((f"{f.stem}: {name}" if len(files) > 1 else name, table))
    cols = fprs or sorted({k for _, t in rows for k in t}, key=float)
    return cols, [(name, [t.get(c) for c in cols]) for name, t in rows]


def percent(v: float | None) -> str:
    """A rate as a percentage with 2 decimals; '-' where it is missing or not measurable."""
    return "-" if v is None or v != v else f"{100 * v:.2f}"


def markdown(cols: list[str], rows: list[tuple[str, list]]) -> str:
    lines = ["| method | " + " | ".join(f"TPR@FPR={c}" for c in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    lines += [f"| {name} | " + " | ".join(percent(v) for v in vals) + " |" for name, vals in rows]
    return "\n".join(lines)
