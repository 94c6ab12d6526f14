"""BatchNorm-statistics fine-tuning on LFW, in the reference's table format, of dlib-r29 (by
default) or of a model trained here (`--model` an exported safetensors, whose statistics are
the running averages of its training run).

dlib-r29's statistics were measured on CelebA faces (the baseline). Each variant re-estimates
them — parameters frozen, BatchNorm in train mode, momentum 0.1, batches of 64 — on the
aligned faces of the training identities (bench/data/lfw_split/train.txt), optionally mixed
with 5 % N(0,1) noise images, Gaussian blur σ ∈ [3, 5] on 5 % of faces, 5 % fractal images
(procedural, offline) or 5 % face-free photos (../shared/data/nonface_imagenet), for 3 epochs
with a snapshot every 25 steps and at each epoch's end; one more variant averages all batches
(momentum None) instead of the exponential average. Every snapshot is evaluated on the
validation identities (val.txt, all pairs: mean TPR at FPR 1e-4 and 1e-3) and the best one is
reported on the test identities (allpairs_test.txt: 7,791 images, 30.3 M pairs) — chosen on one
set, reported on another. Diagnostics: per-layer drift of the statistics, per-layer NLL of test
activations, densities of normalised first/last-layer inputs.
Writes bench/results/bn_finetune_lfw.json and bn_finetune_{drift,nll,densities}.png (for
`--model X.safetensors`: bn_finetune_X.json and bn_finetune_X_*.png).

    python bench/bn_finetune_lfw.py [--model dlib-r29|X.safetensors] [--epochs 3] [--limit N]
"""
from __future__ import annotations

import argparse
import copy
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from faceforge.core.data import lfw_dir, shared_data_dir
from faceforge.core.files import atomic_write_json
from faceforge.evaluate.lfw import aligned_crops, detect_lfw_faces
from faceforge.evaluate.plots import plot_bn_change, plot_bn_densities, plot_bn_nll
from faceforge.evaluate.verification import DEFAULT_FPRS, all_pairs_scores, eer, tpr_at_fpr
from faceforge.io.fractals import FractalImages
from faceforge.models.embedders import create_embedder
from faceforge.train.bn_finetune import (BNFinetuneConfig, BNFinetuner, OutOfDomainImages, bn_activation_report,
                                         bn_relative_change, load_bn_buffers)
from faceforge.vision.detectors import create_detector

HERE = Path(__file__).resolve().parent
SPLIT = HERE / "data" / "lfw_split"
RESULTS = HERE / "results"
VARIANTS = {
    "LFW faces only": {},
    "LFW faces only, cumulative average": {"momentum": None},
    "+ noise": {"noise": 0.05},
    "+ blur": {"blur": 0.05},
    "+ fractals": {"ood": 0.05, "source": "fractals"},
    "+ non-face photos": {"ood": 0.05, "source": "photos"},
    "+ mix (noise, blur, fractals)": {"noise": 0.05, "blur": 0.05, "ood": 0.05, "source": "fractals"},
}


@torch.no_grad()
def embed(model, preprocess, crops: np.ndarray) -> np.ndarray:
    model.eval()
    out = [torch.nn.functional.normalize(model(preprocess(crops[i:i + 128]))).numpy()
           for i in range(0, len(crops), 128)]
    return np.concatenate(out)


def verification(model, preprocess, crops, ids, fprs=DEFAULT_FPRS) -> dict:
    s, y = all_pairs_scores(embed(model, preprocess, crops), ids)
    t = tpr_at_fpr(s, y, fprs)
    return {"tpr_at_fpr": {k: v["tpr"] for k, v in t.items()}, "eer": eer(s, y)["eer"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="dlib-r29",
                    help="dlib-r29, or an exported model (safetensors with its card) trained here")
    ap.add_argument("--root", type=Path, default=lfw_dir())
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--snapshot-every", type=int, default=25)
    ap.add_argument("--limit", type=int, default=None, help="first N images of each list (a quick check)")
    args = ap.parse_args()
    show = sys.stderr.isatty()
    torch.manual_seed(0)
    emb = create_embedder(args.model, device="cpu")
    preprocess, size = emb.preprocess, emb.spec.size
    original = copy.deepcopy(emb.model).eval()
    tag = "lfw" if args.model == "dlib-r29" else Path(args.model).stem
    what = "dlib-r29" if args.model == "dlib-r29" else f"{Path(args.model).name} (trained here)"
    det = create_detector("yunet")
    crops, ids = {}, {}
    for split, name in (("train", "train.txt"), ("val", "val.txt"), ("test", "allpairs_test.txt")):
        names = (SPLIT / name).read_text().split()[:args.limit]
        images, faces, _ = detect_lfw_faces(args.root, names, det, show)
        crops[split] = aligned_crops(emb, images, faces, names)
        ids[split] = np.array([n.split("/")[0] for n in names])
        del images
    val_fprs = (1e-4, 1e-3)

    def evaluate(model) -> dict:
        t = verification(model, preprocess, crops["val"], ids["val"], val_fprs)["tpr_at_fpr"]
        return {"val_tpr_1e-4": t["0.0001"], "val_tpr_1e-3": t["0.001"], "val_score": (t["0.0001"] + t["0.001"]) / 2}

    base = copy.deepcopy(original)
    baseline = "baseline (statistics measured on CelebA)" if args.model == "dlib-r29" else \
        "as trained (running averages of the training run)"
    rows = [{"method": baseline, **evaluate(base), "test": verification(base, preprocess, crops["test"], ids["test"])}]
    print(f"{rows[0]['method']:40s} " + " ".join(f"{100 * v:6.2f}" for v in rows[0]["test"]["tpr_at_fpr"].values()))
    models, finals = {"baseline": base}, {}
    sample = torch.from_numpy(np.arange(len(crops["test"]))[::max(1, len(crops["test"]) // 256)][:256])
    with tempfile.TemporaryDirectory() as tmp:
        for name, v in VARIANTS.items():
            model = copy.deepcopy(original)
            source = v.get("source")
            ood = FractalImages(size, seed=0) if source == "fractals" else \
                OutOfDomainImages(shared_data_dir() / "nonface_imagenet", size) if source == "photos" else None
            cfg = BNFinetuneConfig(output=f"{tmp}/{len(rows)}", epochs=args.epochs, batch_size=64,
                                   momentum=v.get("momentum", 0.1),
                                   noise=v.get("noise", 0.0), blur=v.get("blur", 0.0), ood=v.get("ood", 0.0),
                                   snapshot_every=args.snapshot_every, device="cpu")
            t0 = time.perf_counter()
            res = BNFinetuner(model, crops["train"], cfg, preprocess, ood=ood,
                              evaluate=evaluate, metric="val_score").fit()
            seconds = time.perf_counter() - t0
            best = res["best_finetuned"]  # the baseline is row 0; each variant by its own best
            final = copy.deepcopy(model)
            load_bn_buffers(final, Path(res["output"]) / res["history"][-1]["file"])
            load_bn_buffers(model, Path(res["output"]) / best["file"])
            row = {"method": name, "config": {k: val for k, val in v.items()}, "best_snapshot": best["snapshot"],
                   "beats_baseline_on_val": best["val_score"] > rows[0]["val_score"],
                   **{k: best[k] for k in ("val_tpr_1e-4", "val_tpr_1e-3", "val_score")},
                   "snapshots": [{k: r[k] for k in ("snapshot", "step", "val_score")} for r in res["history"]],
                   "fit_seconds_with_evaluations": round(seconds, 1),
                   "test": verification(model, preprocess, crops["test"], ids["test"])}
            rows.append(row)
            models[name], finals[name] = copy.deepcopy(model), final
            print(f"{name:40s} " + " ".join(f"{100 * x:6.2f}" for x in row["test"]["tpr_at_fpr"].values())
                  + f"  (best {best['snapshot']}, val {100 * best['val_score']:.2f}, {seconds:.0f} s)")
    x = preprocess(crops["test"][sample.numpy()])
    drift = {n: bn_relative_change(base, m) for n, m in finals.items()}  # after the last epoch
    reports = {n: bn_activation_report(m, x) for n, m in models.items()
               if n in ("baseline", "LFW faces only", "+ noise", "+ mix (noise, blur, fractals)")}
    stem = "bn_finetune" if tag == "lfw" else f"bn_finetune_{tag}"
    plot_bn_change(drift, RESULTS / f"{stem}_drift.png", f"{what}: BatchNorm statistics vs {baseline.split(' (')[0]}")
    plot_bn_nll(reports, RESULTS / f"{stem}_nll.png", f"{what} on LFW test faces: NLL under running statistics")
    plot_bn_densities(reports, RESULTS / f"{stem}_densities.png", "LFW test faces")
    atomic_write_json(RESULTS / f"bn_finetune_{tag}.json", {
        "benchmark": f"BatchNorm-statistics fine-tuning of {what}, chosen on LFW val identities, reported on "
                     "LFW all-pairs test identities", "model": args.model,
        "train_images": len(crops["train"]), "val_images": len(crops["val"]), "test_images": len(crops["test"]),
        "epochs": args.epochs, "snapshot_every": args.snapshot_every, "batch_size": 64, "momentum": 0.1,
        "selection": "mean of val TPR at FPR 1e-4 and 1e-3 (all val pairs)",
        "results": rows,
        "drift_after_last_epoch": {n: {"mean": d["mean"].tolist(), "var": d["var"].tolist()} for n, d in drift.items()},
        "nll_per_layer": {n: r["nll"].tolist() for n, r in reports.items()},
        "machine": {"cpu_threads": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__}})


if __name__ == "__main__":
    main()
