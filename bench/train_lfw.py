"""Real training runs on CPU, on an identity-disjoint LFW split (bench/data/lfw_split/,
from `faceforge split`): LFW identities with ≥ 4 images, 427 train / 61 val / 122 test.

  scratch:       MobileFaceNet (width ×1) + ArcFace from random weights; val pairs each epoch.
  dlib-finetune: the pretrained dlib-r29 with a new ArcFace head (imprinted from the
                 class means), on dlib chips.

Reports held-out *test* pair accuracy (10-fold) before training and for the best epoch
(chosen on val), per-epoch history, and time. Writes bench/results/train_<recipe>.json.

    python bench/train_lfw.py --recipe scratch [--epochs 8]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from faceforge.core.data import lfw_dir
from faceforge.core.files import atomic_write_json
from faceforge.evaluate.callbacks import VerificationCallback
from faceforge.evaluate.plots import plot_training_history
from faceforge.train.checkpoint import load_checkpoint
from faceforge.train.config import build_trainer
from faceforge.vision.detectors import create_detector
from faceforge.vision.prepare import prepare_aligned_dataset

HERE = Path(__file__).resolve().parent
SPLIT = HERE / "data" / "lfw_split"
CACHE = Path.home() / ".cache" / "faceforge" / "lfw_aligned"

RECIPES = {
    "scratch": {
        "template": ("arcface", 112),
        "model": {"backbone": "mbf", "num_features": 128, "scale": 1},
        "head": {"type": "arcface", "s": 32, "m": 0.3},
        "train": {"epochs": 8, "batch_size": 64, "lr": 0.1, "warmup_epochs": 1, "weight_decay": 5e-4},
        "augment": "light",
    },
    "dlib-finetune": {
        "template": ("dlib-chip", 150),
        "model": {"backbone": "dlib-r29"},
        "head": {"type": "arcface", "s": 32, "m": 0.3, "init": "class_means"},
        "train": {"epochs": 3, "batch_size": 64, "lr": 0.002, "head_lr_mult": 50, "warmup_epochs": 0.5},
        "augment": "light",
    },
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="scratch")
    ap.add_argument("--epochs", type=int)
    args = ap.parse_args()
    r = RECIPES[args.recipe]
    template, size = r["template"]
    root = CACHE / f"{template}_{size}"
    prep = prepare_aligned_dataset(lfw_dir() / "images", root, create_detector("yunet"), size, template, min_images=4)
    out = HERE / "results" / f"runs_{args.recipe}"
    train = {**r["train"], "output": str(out), "device": "cpu", "best_metric": "val_acc", "checkpoint_every": 50}
    if args.epochs:
        train["epochs"] = args.epochs
    cfg = {"model": r["model"], "head": r["head"],
           "data": {"root": str(root), "list": str(SPLIT / "train.txt"), "augment": r["augment"]},
           "val": {"pairs": str(SPLIT / "val_pairs.txt"), "root": str(root)}, "train": train}
    trainer = build_trainer(cfg)
    test = VerificationCallback(SPLIT / "test_pairs.txt", root, prefix="test")
    before = test.evaluate(trainer.backbone, trainer.preprocess, trainer.device)
    resumed = trainer.resume()
    t0 = time.perf_counter()
    history = trainer.fit()
    seconds = time.perf_counter() - t0
    best = load_checkpoint(out / "best.pt")
    trainer.backbone.load_state_dict(best["backbone"])
    after = test.evaluate(trainer.backbone, trainer.preprocess, trainer.device)
    res = {"recipe": args.recipe, "config": {k: v for k, v in cfg.items() if k != "data"},
           "data": {"train_images": len(trainer.dataset), "train_identities": len(trainer.dataset.classes),
                    "split": "bench/data/lfw_split (identity-disjoint, seed 0)", "aligned_skipped": prep.skipped},
           "test_before": before, "test_after_best_epoch": after, "best_epoch": json.loads(best["metrics"]),
           "history": history, "train_seconds": round(seconds, 1), "resumed": resumed,
           "machine": {"torch_threads": torch.get_num_threads(), "device": "cpu"}}
    atomic_write_json(HERE / "results" / f"train_{args.recipe}.json", res)
    plot_training_history(history, HERE / "results" / f"train_{args.recipe}.png",
                          f"LFW split, {args.recipe}: test {100 * before['test_acc']:.1f} → {100 * after['test_acc']:.1f} %")
    print(json.dumps({"before": before, "after": after, "seconds": round(seconds)}, indent=1))


if __name__ == "__main__":
    main()
