"""TPR@FPR on 16 M scores: time and peak memory, against sklearn.metrics.roc_curve +
interpolation measured in the same run. Targets: ≥ 5× faster, ≤ 2× the input's memory.

Writes bench/results/eval.json.   python bench/eval.py [--n 16000000] [--positives 0.0625]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from faceforge.core.files import atomic_write_json
from faceforge.evaluate.verification import DEFAULT_FPRS, tpr_at_fpr
from common import measured, sklearn_tpr  # bench/common.py

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=16_000_000)
    ap.add_argument("--positives", type=float, default=0.0625)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    labels = rng.random(args.n) < args.positives
    scores = (rng.normal(size=args.n) * 0.12 + np.where(labels, 0.55, 0.05)).astype(np.float32)
    input_bytes = scores.nbytes + labels.nbytes
    ours, t_ours, m_ours = measured(tpr_at_fpr, scores, labels, DEFAULT_FPRS)
    ref, t_ref, m_ref = measured(sklearn_tpr, scores, labels)
    res = {
        "scores": args.n, "negatives": int((~labels).sum()), "input_mb": round(input_bytes / 2**20, 1),
        "faceforge": {"seconds": round(t_ours, 3), "peak_extra_mb": round(m_ours / 2**20, 1),
                      "peak_over_input": round(m_ours / input_bytes, 2),
                      "tpr": {k: v["tpr"] for k, v in ours.items()}},
        "baseline_sklearn_roc_curve_interp": {"seconds": round(t_ref, 3), "peak_extra_mb": round(m_ref / 2**20, 1),
                                              "tpr": ref},
        "speedup": round(t_ref / t_ours, 1),
        "max_tpr_difference": max(abs(ours[k]["tpr"] - ref[k]) for k in ref),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / "eval.json", res)
    print(f"{args.n:,} scores: faceforge {t_ours:.2f} s, {m_ours / 2**20:.0f} MB extra "
          f"({res['faceforge']['peak_over_input']}× input); sklearn roc_curve + interp {t_ref:.2f} s, "
          f"{m_ref / 2**20:.0f} MB → {res['speedup']}× faster; max TPR difference {res['max_tpr_difference']:.2e}")
    print(json.dumps({"written": str(RESULTS / "eval.json")}))


if __name__ == "__main__":
    main()
