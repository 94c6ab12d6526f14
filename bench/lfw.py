"""Full LFW 10-fold protocol for every embedder, with flip test and score fusion.

YuNet detects once; each model embeds the same aligned faces (plain and mirrored).
Fusion averages the two models' cosines (= cosine of the concatenated unit vectors).
Writes bench/results/lfw.json and bench/results/lfw_roc.png.

    python bench/lfw.py [--root ../shared/data/lfw] [--folds K] [--dlib-detector]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from faceforge.core.data import lfw_dir
from faceforge.core.files import atomic_write_json
from faceforge.core.progress import progress
from faceforge.evaluate.lfw import (NO_FACE_POLICY, aligned_crops, detect_lfw_faces, lfw_metrics,
                                    read_pairs, subset_pairs)
from faceforge.evaluate.plots import plot_roc
from faceforge.models.embedders import create_embedder
from faceforge.vision.detectors import create_detector
from common import l2n  # bench/common.py

RESULTS = Path(__file__).resolve().parent / "results"


def embed_both(model: str, images, faces, names, bs: int = 64) -> tuple[np.ndarray, np.ndarray, float]:
    emb = create_embedder(model, batch_size=bs, device="cpu")
    plain, mirrored = [], []
    t0 = time.perf_counter()
    for i in progress(range(0, len(names), bs), f"embed {model}", enabled=sys.stderr.isatty()):
        crops = aligned_crops(emb, images, faces, names[i:i + bs])
        plain.append(emb.embed_crops(crops))
        mirrored.append(emb.embed_crops(np.ascontiguousarray(crops[:, :, ::-1])))
    secs = time.perf_counter() - t0
    p, m = np.concatenate(plain), np.concatenate(mirrored)
    return p, l2n(p + m), secs / 2  # time of one (non-flip) pass


def summarise(name: str, res: dict, extra: dict) -> dict:
    res = {k: v for k, v in res.items() if k != "_raw"}
    return {"method": name, **extra, **res}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, default=lfw_dir())
    ap.add_argument("--folds", type=int, default=None)
    ap.add_argument("--dlib-detector", action="store_true",
                    help="also run dlib-r29 on dlib HOG + 5-point chips (the face_recognition pipeline)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    pairs = subset_pairs(read_pairs(args.root / "pairs.txt"), args.folds)
    names = sorted(set(pairs.left) | set(pairs.right))
    rows, curves = [], {}
    t0 = time.perf_counter()
    images, faces, missing = detect_lfw_faces(args.root, names, create_detector("yunet"), sys.stderr.isatty())
    det_s = time.perf_counter() - t0
    vecs = {}
    for model in ("sface", "sface-int8", "dlib-r29"):  # sface-int8: OpenCV's runtime, to check the port
        plain, flipped, secs = embed_both(model, images, faces, names)
        vecs[model] = (plain, flipped)
        for flip, v in ((False, plain), (True, flipped)):
            res = lfw_metrics(pairs, dict(zip(names, v)))
            label = f"yunet + {model}" + (" + flip" if flip else "")
            curves[label] = res["_raw"]["roc"]
            rows.append(summarise(label, res, {
                "detector": "yunet", "model": model, "flip": flip,
                "ms_per_image_detect": round(1000 * det_s / len(names), 2),
                "ms_per_image_embed": round(1000 * secs * (2 if flip else 1) / len(names), 2)}))
    for flip in (False, True):
        fused = l2n(np.concatenate([vecs["sface"][int(flip)], vecs["dlib-r29"][int(flip)]], axis=1))
        res = lfw_metrics(pairs, dict(zip(names, fused)))
        label = "yunet + fusion(sface, dlib-r29)" + (" + flip" if flip else "")
        curves[label] = res["_raw"]["roc"]
        rows.append(summarise(label, res, {"detector": "yunet", "model": "sface+dlib-r29", "flip": flip}))
    if args.dlib_detector:
        from faceforge.vision.detectors.dlib_hog import DlibHogDetector
        det = DlibHogDetector(upsample=1)
        t0 = time.perf_counter()
        d_images, d_faces, d_missing = detect_lfw_faces(args.root, names, det, sys.stderr.isatty())
        # As face_recognition does for a miss: dlib's 5-point predictor in a central box.
        for n in d_missing:
            h, w = d_images[n].shape[:2]
            d_faces[n] = det.landmarks_for_box(d_images[n], np.array([w * 0.25, h * 0.25, w * 0.75, h * 0.75]))
        d_det = time.perf_counter() - t0
        plain, flipped, secs = embed_both("dlib-r29", d_images, d_faces, names)
        for flip, v in ((False, plain), (True, flipped)):
            res = lfw_metrics(pairs, dict(zip(names, v)))
            label = "dlib HOG + 5-point chip + dlib-r29" + (" + flip" if flip else "")
            curves[label] = res["_raw"]["roc"]
            rows.append(summarise(label, res, {
                "detector": "dlib", "model": "dlib-r29", "flip": flip,
                "no_face_found": len(d_missing),
                "no_face_policy": "dlib 5-point predictor run in the central box of the image",
                "ms_per_image_detect": round(1000 * d_det / len(names), 2)}))
    out = {
        "benchmark": "LFW 10-fold verification (pairs.txt), deep-funneled images",
        "images": len(names), "pairs": len(pairs.same),
        "no_face_found_yunet": len(missing), "no_face_images_yunet": missing, "no_face_policy": NO_FACE_POLICY,
        "machine": {"cpu_threads": torch.get_num_threads(), "platform": platform.platform(),
                    "torch": torch.__version__},
        "reference_as_shipped": {"YuNet int8 + SFace int8 (OpenCV)": "99.40 ± 0.37",
                                 "dlib HOG + 5-point + ResNet": "98.70 ± 0.43"},
        "results": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / "lfw.json", out)
    plot_roc(curves, RESULTS / "lfw_roc.png", "LFW 10-fold pairs")
    print(f"{'method':48s} {'accuracy':>16s} {'TPR@1e-3':>9s} {'no face':>8s}")
    for r in rows:
        print(f"{r['method']:48s} {100 * r['accuracy_mean']:7.2f} ± {100 * r['accuracy_std']:.2f} % "
              f"{100 * r['tpr_at_fpr']['0.001']['tpr']:9.2f} {r.get('no_face_found', len(missing)):8d}")
    print(json.dumps({"written": str(RESULTS / "lfw.json")}))


if __name__ == "__main__":
    main()
