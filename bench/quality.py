"""What quality scoring costs on top of embedding: the same aligned LFW faces embedded by
dlib-r29 alone (baseline) and embedded + scored by the quality estimator in the same
forward pass (BatchNorm-input hooks + CatBoost). The two run in alternating order, round
after round; the overhead is the median of the per-round ratios, which cancels the slow drift
of a shared machine's speed. Target: ≤ 20 % extra. Writes bench/results/quality_overhead.json.

    python bench/quality.py [--images 1024] [--repeats 5]
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from faceforge.core.data import lfw_dir
from faceforge.core.files import atomic_write_json
from faceforge.evaluate.lfw import aligned_crops, detect_lfw_faces
from faceforge.models.embedders import create_embedder
from faceforge.quality.estimator import QualityEstimator, train_estimator
from faceforge.quality.labels import leave_one_out_labels
from faceforge.quality.scorer import QualityScorer
from faceforge.vision.detectors import create_detector

HERE = Path(__file__).resolve().parent
SPLIT = HERE / "data" / "lfw_split"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, default=lfw_dir())
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    embedder = create_embedder("dlib-r29", device="cpu", batch_size=64)
    detector = create_detector("yunet")
    # an estimator trained on training identities, timed on test identities
    train_names = (SPLIT / "train.txt").read_text().split()[:1500]
    images, faces, _ = detect_lfw_faces(args.root, train_names, detector, False)
    plain = QualityScorer(embedder)
    raw, feats = plain.features(aligned_crops(embedder, images, faces, train_names))
    ids = np.array([n.split("/")[0] for n in train_names])
    est = train_estimator(feats, leave_one_out_labels(raw, ids), ids, backbone=embedder.name,
                          layer_names=plain.layer_names, fingerprint=plain.fingerprint, iterations=2500)
    with tempfile.TemporaryDirectory() as tmp:  # scored as users do: loaded from disk
        est.save(Path(tmp) / "qaa")
        scorer = QualityScorer(embedder, QualityEstimator.load(Path(tmp) / "qaa"))
    test_names = (SPLIT / "allpairs_test.txt").read_text().split()[:args.images]
    images, faces, _ = detect_lfw_faces(args.root, test_names, detector, False)
    crops = aligned_crops(embedder, images, faces, test_names)
    embedder.embed_crops(crops[:64]), scorer.embed_and_score(crops[:64])  # warm-up
    base, ours = [], []

    def timed(fn):
        t0 = time.perf_counter()
        res = fn(crops)
        return res, time.perf_counter() - t0

    for r in range(args.repeats):
        if r % 2 == 0:
            (e0, tb), ((e1, _), to) = timed(embedder.embed_crops), timed(scorer.embed_and_score)
        else:
            ((e1, _), to), (e0, tb) = timed(scorer.embed_and_score), timed(embedder.embed_crops)
        base.append(tb), ours.append(to)
    assert np.allclose(e0, e1, atol=1e-6), "scoring must not change the embeddings"
    b, o = float(np.median(base)), float(np.median(ours))
    ratios = np.array(ours) / np.array(base)
    n = len(crops)
    res = {"benchmark": "quality scoring overhead over embedding alone (same forward pass)",
           "model": embedder.name, "images": n, "batch_size": embedder.batch_size, "repeats": args.repeats,
           "baseline": "dlib-r29 embed_crops alone",
           "ms_per_image_embed": round(1000 * b / n, 3), "ms_per_image_embed_and_score": round(1000 * o / n, 3),
           "overhead_percent": round(100 * (float(np.median(ratios)) - 1), 1), "target_percent": 20,
           "overhead_percent_per_round": [round(100 * (x - 1), 1) for x in ratios],
           "quality_features": 2 * len(scorer.layer_names),
           "catboost_best_iteration": est.manifest["train"]["best_iteration"],
           "machine": {"cpu_threads": torch.get_num_threads(), "platform": platform.platform(),
                       "torch": torch.__version__}}
    print(f"embed alone {res['ms_per_image_embed']} ms/img, embed + quality {res['ms_per_image_embed_and_score']} "
          f"ms/img → {res['overhead_percent']:+.1f} % (target ≤ 20 %)")
    atomic_write_json(HERE / "results" / "quality_overhead.json", res)


if __name__ == "__main__":
    main()
