"""Quality estimation (QAA) on an identity-disjoint LFW split, against every baseline.

Train: the BatchNorm-input features of dlib-r29 on the images of the training identities
(bench/data/lfw_split/train.txt), labelled by the leave-one-out identity centre; CatBoost
with the reference settings, early stopping on a held-out tenth of those identities.
Test: every image of the all-pairs identities (allpairs_test.txt: 7,791 images, 30.3 M pairs,
no identity in common with training). Each quality measure — QAA, detector score, face size,
Laplacian sharpness, pose, embedding norm, SER-FIQ and random — gets
- the error-vs-reject curve (pair quality = min of the two; threshold fixed at FMR 1e-3 and
  1e-4 on all pairs; FNMR of the genuine pairs left) with its pAUC up to 20 % and 100 %, and
- the reference's table: TPR at FPR 1e-6…1e-1 on all pairs among the images left after dropping
  the lowest 5 % (cut = sorted(q)[⌊0.05·N⌋], keep q ≥ cut).
Writes bench/results/quality_lfw.json and quality_lfw_erc.png.

    python bench/quality_lfw.py [--iterations 2500] [--limit N]
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from faceforge.core.data import lfw_dir
from faceforge.core.files import atomic_write_json
from faceforge.evaluate.erc import error_vs_reject
from faceforge.evaluate.lfw import aligned_crops, detect_lfw_faces
from faceforge.evaluate.plots import plot_error_vs_reject
from faceforge.evaluate.verification import DEFAULT_FPRS, all_pairs_scores, tpr_at_fpr
from faceforge.models.embedders import create_embedder
from faceforge.quality import baselines
from faceforge.quality.estimator import to_score, train_estimator
from faceforge.quality.labels import leave_one_out_labels
from faceforge.quality.scorer import QualityScorer
from faceforge.quality.workflow import quality_cut
from faceforge.vision.detectors import create_detector
from common import l2n  # bench/common.py

HERE = Path(__file__).resolve().parent
SPLIT = HERE / "data" / "lfw_split"
RESULTS = HERE / "results"
DROP_PERCENT = 5.0


def run_split(root: Path, names: list[str], scorer: QualityScorer, detector, show: bool, serfiq: bool) -> dict:
    """Detect, align, embed (one forward) and every per-image quality input."""
    images, faces, missing = detect_lfw_faces(root, names, detector, show)
    raws, feats, lin_in, crops_sharp = [], [], [], []
    t_embed = t_feat = 0.0
    for i in range(0, len(names), 64):
        crops = aligned_crops(scorer.embedder, images, faces, names[i:i + 64])
        t0 = time.perf_counter()
        scorer.embedder.embed_raw(crops)            # embedding alone, for the overhead figure
        t1 = time.perf_counter()
        raw, f, x, layer = scorer.features(crops, embedding_layer_input=True)
        t2 = time.perf_counter()
        t_embed, t_feat = t_embed + t1 - t0, t_feat + t2 - t1
        raws.append(raw), feats.append(f), lin_in.append(x)
        crops_sharp.append(baselines.laplacian_sharpness(crops))
    raw = np.concatenate(raws)
    lm = np.stack([faces[n].landmarks for n in names])
    out = {"raw": raw, "emb": l2n(raw), "features": np.concatenate(feats),
           "ids": np.array([n.split("/")[0] for n in names]), "missing": len(missing),
           "embed_s": t_embed, "embed_with_features_s": t_feat,
           "baselines": {
               "detector score": np.array([faces[n].score for n in names], np.float64),
               "face size (eye distance)": baselines.face_size(lm),
               "sharpness (Laplacian var)": np.concatenate(crops_sharp),
               "pose (frontalness)": baselines.pose_frontalness(lm),
               "embedding norm": baselines.embedding_norm(raw)}}
    if serfiq:
        out["baselines"]["SER-FIQ (dlib-r29)"] = baselines.serfiq(layer, torch.cat(lin_in))
    return out


def tpr_row(scores: np.ndarray, same: np.ndarray) -> dict:
    t = tpr_at_fpr(scores, same, DEFAULT_FPRS)
    return {k: v["tpr"] for k, v in t.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, default=lfw_dir())
    ap.add_argument("--iterations", type=int, default=2500)
    ap.add_argument("--limit", type=int, default=None, help="first N images of each list (a quick check)")
    args = ap.parse_args()
    show = sys.stderr.isatty()
    train_names = (SPLIT / "train.txt").read_text().split()[:args.limit]
    test_names = (SPLIT / "allpairs_test.txt").read_text().split()[:args.limit]
    embedder = create_embedder("dlib-r29", device="cpu")
    scorer = QualityScorer(embedder)
    detector = create_detector("yunet")

    train = run_split(args.root, train_names, scorer, detector, show, serfiq=False)
    labels = leave_one_out_labels(train["emb"], train["ids"])
    t0 = time.perf_counter()
    est = train_estimator(train["features"], labels, train["ids"], backbone=embedder.name,
                          layer_names=scorer.layer_names, fingerprint=scorer.fingerprint,
                          iterations=args.iterations)
    fit_s = time.perf_counter() - t0
    print(f"CatBoost: {fit_s:.0f} s, {est.manifest['train']}")
    del train

    test = run_split(args.root, test_names, scorer, detector, show, serfiq=True)
    t0 = time.perf_counter()
    pred = est.predict(test["features"])
    predict_s = time.perf_counter() - t0
    test_labels = leave_one_out_labels(test["emb"], test["ids"])
    ok = np.isfinite(test_labels)
    rng = np.random.default_rng(0)
    measures = {"QAA (CatBoost, dlib-r29 BN features)": pred,
                "QAA score 0..100 (label-range mapping, default)": est.score(test["features"]).astype(np.float64),
                "QAA score 0..100 (reference unit mapping)": to_score(pred).astype(np.float64),
                **test["baselines"], "random": rng.random(len(pred))}
    correlation = {k: float(np.corrcoef(np.argsort(np.argsort(v[ok])), np.argsort(np.argsort(test_labels[ok])))[0, 1])
                   for k, v in measures.items()}

    scores, same, qmins = all_pairs_scores(test["emb"], test["ids"], quality=list(measures.values()))
    base_row = tpr_row(scores, same)
    erc, table = {}, [{"method": "all images (baseline)", "images": len(pred), "tpr_at_fpr": base_row}]
    for (name, q), qpair in zip(measures.items(), qmins):
        erc[name] = error_vs_reject(scores, same, qpair, qpair, fmrs=(1e-3, 1e-4))
        c = erc[name]["curves"]
        print(f"{name:40s} pAUC20@1e-3 {c['0.001']['pauc_20']:.5f}  pAUC20@1e-4 {c['0.0001']['pauc_20']:.5f}  "
              f"FNMR@1e-3 0%→20%: {c['0.001']['fnmr'][0]:.4f}→{c['0.001']['fnmr'][20]:.4f}")
    del scores, same, qmins
    for name, q in measures.items():
        keep = q >= quality_cut(q, drop_percent=DROP_PERCENT)
        s, y = all_pairs_scores(test["emb"][keep], test["ids"][keep])
        row = {"method": f"drop lowest {DROP_PERCENT:g} % by {name}", "images": int(keep.sum()),
               "pairs": len(s), "positives": int(y.sum()), "tpr_at_fpr": tpr_row(s, y)}
        table.append(row)
        print(f"{row['method']:60s} " + " ".join(f"{100 * v:6.2f}" for v in row["tpr_at_fpr"].values()))
        del s, y
    plot_error_vs_reject({k: {"fractions": v["fractions"], "curves": {"0.001": v["curves"]["0.001"]}}
                          for k, v in erc.items() if "0..100" not in k},
                         RESULTS / "quality_lfw_erc.png", "LFW all pairs (test identities), dlib-r29, FMR 1e-3")
    n = len(test_names)
    atomic_write_json(RESULTS / "quality_lfw.json", {
        "benchmark": "quality estimation on an identity-disjoint LFW split (dlib-r29)",
        "train_list": str((SPLIT / "train.txt").relative_to(HERE.parent)), "train_images": len(train_names),
        "test_list": str((SPLIT / "allpairs_test.txt").relative_to(HERE.parent)), "test_images": n,
        "test_no_face_found": test["missing"],
        "estimator": {k: v for k, v in est.manifest.items() if k != "layers"}, "fit_seconds": round(fit_s, 1),
        "feature_overhead": {
            "ms_per_image_embed": round(1000 * test["embed_s"] / n, 3),
            "ms_per_image_embed_with_features": round(1000 * test["embed_with_features_s"] / n, 3),
            "ms_per_image_predict": round(1000 * predict_s / n, 4)},
        "spearman_vs_test_loo_label": correlation,
        "distinct_integer_scores": {k: int(len(np.unique(v))) for k, v in measures.items() if "0..100" in k},
        "error_vs_reject": {k: {"pauc": {f: {"20": c["pauc_20"], "100": c["pauc_100"]} for f, c in v["curves"].items()},
                                "threshold": {f: c["threshold"] for f, c in v["curves"].items()},
                                "fnmr_at": {f: {p: c["fnmr"][int(p)] for p in ("0", "5", "10", "20", "40")}
                                            for f, c in v["curves"].items()},
                                "curve": v} for k, v in erc.items()},
        "drop_table": table,
        "machine": {"cpu_threads": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__}})


if __name__ == "__main__":
    main()
