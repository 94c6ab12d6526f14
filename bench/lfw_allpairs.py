"""LFW all-pairs verification: every pair among the images of identities no training split
touched (bench/data/lfw_split/allpairs_test.txt: 7,791 images, 30.3 M pairs), so FPR down
to 1e-6 rests on ~30 negatives rather than none.

YuNet detects once (LFW's no-face policy); sface and dlib-r29 embed the same faces, plain
and with the flip test; fusion averages the two models' cosines. Scores are computed in
row blocks (never the N × N matrix). The TPR table is checked against
sklearn.metrics.roc_curve + interpolation on the same scores (time ratio reported).
Writes bench/results/lfw_allpairs.json, lfw_allpairs_roc.png, lfw_allpairs_scores.png.

    python bench/lfw_allpairs.py [--root ../shared/data/lfw] [--limit N]
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from faceforge.core.data import lfw_dir
from faceforge.core.files import atomic_write_json
from faceforge.evaluate.lfw import NO_FACE_POLICY, detect_lfw_faces, embed_faces
from faceforge.evaluate.plots import plot_roc, plot_score_distributions
from faceforge.evaluate.verification import DEFAULT_FPRS, all_pairs_scores, tpr_at_fpr, verification_report
from faceforge.models.embedders import create_embedder
from faceforge.vision.detectors import create_detector
from common import l2n, measured, sklearn_tpr  # bench/common.py

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
LIST = HERE / "data" / "lfw_split" / "allpairs_test.txt"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, default=lfw_dir())
    ap.add_argument("--limit", type=int, default=None, help="first N images only (a quick check)")
    args = ap.parse_args()
    show = sys.stderr.isatty()
    names = LIST.read_text().split()[:args.limit]
    ids = np.array([n.split("/")[0] for n in names])
    t0 = time.perf_counter()
    images, faces, missing = detect_lfw_faces(args.root, names, create_detector("yunet"), show)
    det_s = time.perf_counter() - t0
    vecs, embed_s = {}, {}
    for model in ("sface", "dlib-r29"):
        emb = create_embedder(model, device="cpu")
        t0 = time.perf_counter()
        vecs[model] = embed_faces(emb, images, faces, names, 64, show)
        embed_s[model] = time.perf_counter() - t0
        emb.flip = True
        vecs[f"{model} + flip"] = embed_faces(emb, images, faces, names, 64, show)
    del images
    methods = {f"yunet + {m}": v for m, v in vecs.items()}
    for suffix in ("", " + flip"):
        methods[f"yunet + fusion(sface, dlib-r29){suffix}"] = l2n(
            np.concatenate([vecs[f"sface{suffix}"], vecs[f"dlib-r29{suffix}"]], axis=1))

    rows, curves, hists = [], {}, {}
    timing = {}
    for name, v in methods.items():
        tracemalloc.start()
        t0 = time.perf_counter()
        scores, same = all_pairs_scores(v, ids)
        t_score = time.perf_counter() - t0
        res, curve = verification_report(scores, same)
        t_all = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        if not timing:  # the baseline once, on the first method's scores
            ours, t_ours, _ = measured(tpr_at_fpr, scores, same)
            ref, t_ref, _ = measured(sklearn_tpr, scores, same)
            timing = {
                "scores_bytes": int(scores.nbytes + same.nbytes),
                "scoring_seconds": round(t_score, 2), "report_seconds": round(t_all - t_score, 2),
                "peak_traced_mb_scoring_and_report": round(peak / 2**20, 1),
                "tpr_at_fpr_seconds": round(t_ours, 3), "sklearn_roc_curve_interp_seconds": round(t_ref, 3),
                "speedup_vs_sklearn": round(t_ref / t_ours, 1),
                "max_abs_tpr_difference_vs_sklearn": max(
                    abs(ours[k]["tpr"] - ref[k]) for k in ours if np.isfinite(ours[k]["tpr"])),
            }
            print(f"TPR@FPR on {len(scores):,} scores: {t_ours:.2f} s vs sklearn roc_curve + interp "
                  f"{t_ref:.2f} s → {t_ref / t_ours:.1f}× faster")
        curves[name], hists[name] = curve, res.pop("distributions")
        rows.append({"method": name, **res})
        t = res["tpr_at_fpr"]
        print(f"{name:45s} " + " ".join(f"{100 * t[f'{f:g}']['tpr']:6.2f}" for f in DEFAULT_FPRS)
              + f"  EER {100 * res['eer']['eer']:.3f} %")
        del scores, same
    plot_roc(curves, RESULTS / "lfw_allpairs_roc.png", f"LFW all pairs ({rows[0]['pairs']:,} pairs)")
    plot_score_distributions({k: v for k, v in hists.items() if "flip" not in k}, RESULTS / "lfw_allpairs_scores.png",
                             "LFW all pairs: genuine vs impostor cosine")
    atomic_write_json(RESULTS / "lfw_allpairs.json", {
        "benchmark": "LFW all-pairs verification, identity-disjoint from the training split",
        "images": len(names), "identities": int(len(np.unique(ids))), "list": str(LIST.relative_to(HERE.parent)),
        "pairs": rows[0]["pairs"], "positives": rows[0]["positives"], "negatives": rows[0]["negatives"],
        "no_face_found_yunet": len(missing), "no_face_policy": NO_FACE_POLICY,
        "threshold_rule": "accept if score > t; t admits at most floor(fpr * negatives) impostor pairs",
        "ms_per_image_detect": round(1000 * det_s / len(names), 2),
        "ms_per_image_embed": {m: round(1000 * s / len(names), 2) for m, s in embed_s.items()},
        "metrics_at_scale": timing, "score_distributions": hists,
        "machine": {"cpu_threads": torch.get_num_threads(), "platform": platform.platform(),
                    "torch": torch.__version__},
        "results": rows})


if __name__ == "__main__":
    main()
