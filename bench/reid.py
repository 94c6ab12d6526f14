"""Person re-id on CUHK03 (../shared/data/reid_cuhk03): models trained from scratch on the
743 training people, scored on the 100 test people they never saw.

Stages (each skips what is done; `faceforge train` resumes a killed run):
  train   each row's config (configs/reid_*.yaml) with `faceforge train`: wall time, images/s
  eval    the best epoch exported, then `faceforge eval reid` on the test people: queries from
          camera 0, gallery camera 1; rank-1/5/10, mAP, with k-reciprocal re-ranking apart; pair
          accuracy at the threshold that is best on the training people's cross-camera pairs;
          embedding ms/image. One CMC plot over the rows, the retrieval sheet of the best row.
Writes bench/results/reid.json, reid_cmc.png and reid_retrieval.png.

    python bench/reid.py [--stage train eval] [--rows osnet_adacos effb0_adacos ...]
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from common import run_cli, train_output  # bench/common.py
from faceforge.core.data import shared_data_dir
from faceforge.core.files import atomic_write_json
from faceforge.evaluate.plots import plot_cmc

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULT = HERE / "results" / "reid.json"
# row → (config, what the row compares)
ROWS = {
    "r50_softmax": ("configs/reid_r50_softmax.yaml", "1. ResNet-50, softmax"),
    "r50_arcface": ("configs/reid_r50_arcface.yaml", "1. ResNet-50, ArcFace"),
    "r50_adacos_fixed": ("configs/reid_r50_adacos_fixed.yaml", "1. ResNet-50, AdaCos fixed scale"),
    "r50_adacos": ("configs/reid_r50_adacos.yaml", "1. ResNet-50, AdaCos dynamic scale"),
    "effb0_adacos": ("configs/reid_effb0_adacos.yaml", "2. EfficientNet-B0, AdaCos"),
    "effb0_adacos_balanced": ("configs/reid_effb0_adacos_balanced.yaml", "2. EfficientNet-B0, AdaCos, balanced"),
    "effb1_adacos": ("configs/reid_effb1_adacos.yaml", "2. EfficientNet-B1, AdaCos"),
    "effb1_adacos_balanced": ("configs/reid_effb1_adacos_balanced.yaml", "2. EfficientNet-B1, AdaCos, balanced"),
    "osnet_adacos": ("configs/reid_osnet_adacos.yaml", "3./4. OSNet, AdaCos (CE alone)"),
    "osnet_adacos_triplet": ("configs/reid_osnet_adacos_triplet.yaml", "4. OSNet, AdaCos + triplet, P×K"),
}


def _load() -> dict:
    return json.loads(RESULT.read_text()) if RESULT.exists() else {}


def train(rows: list[str]) -> None:
    for row in rows:
        cfg = ROWS[row][0]
        done = train_output(cfg) / "train.json"
        if done.exists():
            continue
        resumed = (train_output(cfg) / "last.pt").exists()
        t0 = time.perf_counter()
        out = run_cli("train", cfg)
        atomic_write_json(done, {**out, "wall_seconds": round(time.perf_counter() - t0, 1),
                                 "wall_covers": "the resumed part only" if resumed else "the whole run"})
        print(f"{row}: trained in {time.perf_counter() - t0:.0f} s")


def evaluate(rows: list[str]) -> None:
    data = shared_data_dir() / "reid_cuhk03"
    res = _load()
    table = res.setdefault("rows", {})
    curves = {}
    for row in rows:
        cfg, label = ROWS[row]
        run = train_output(cfg)
        if not (run / "train.json").exists():
            print(f"{row}: not trained, left out")
            continue
        model = run.parent / f"{run.name}.safetensors"
        if not model.exists():
            run_cli("export", "safetensors", str(run / "best.pt"), "-o", str(model))
        ev = run_cli("eval", "reid", str(model), "--test", str(data / "test"), "--train", str(data / "train"),
                  "--rerank", "--device", "cpu", "--out", str(run / "eval"), "--overwrite")
        trained = json.loads((run / "train.json").read_text())
        history = trained["history"]
        table[row] = {
            "compares": label, "config": cfg, "ranking": ev["ranking"], "reranked": ev["reranked"],
            "pair_accuracy": ev["pair_accuracy"], "cmc": ev["cmc"], "embed_ms_per_image": ev["ms_per_image"],
            "best_epoch": trained["best"]["epoch"], "val_map_best": trained["best"]["val_map"],
            "epochs": len(history), "train_wall_seconds": trained["wall_seconds"],
            "train_wall_covers": trained.get("wall_covers", "the whole run"),
            "train_images_per_s_median": float(np.median([h["images_per_s"] for h in history])),
            "parameters": _parameters(model)}
        print(f"{row:24s} rank-1 {100 * ev['ranking']['rank1']:5.1f}  mAP {100 * ev['ranking']['mAP']:5.1f}  "
              f"re-ranked {100 * ev['reranked']['rank1']:5.1f}/{100 * ev['reranked']['mAP']:5.1f}  pair acc "
              f"{100 * ev['pair_accuracy']['accuracy']:5.1f}")
    for row, r in table.items():
        curves[ROWS[row][1][3:] if row in ROWS else row] = np.array(r["cmc"])
    if curves:
        plot_cmc(curves, HERE / "results" / "reid_cmc.png", "CUHK03 test people (queries camera 0): CMC")
        best = max(table, key=lambda k: table[k]["ranking"]["mAP"])
        shutil.copy(train_output(ROWS[best][0]) / "eval" / "retrieval.png", HERE / "results" / "reid_retrieval.png")
        res["retrieval_sheet_of"] = best
    res.update({"benchmark": "person re-id on CUHK03 (detected crops): 743 training people, 100 test people",
                "protocol": "queries: camera 0 of the test people; gallery: camera 1; same person in the same "
                            "camera never counts; pair accuracy on all same-person cross-camera pairs and as "
                            "many random different-person ones, threshold chosen on the training people",
                "pretraining": "none: every model starts from random weights (no ImageNet weights offline)",
                "machine": {"torch_threads": torch.get_num_threads(), "device": "cpu"}})
    atomic_write_json(RESULT, res)


def _parameters(model: Path) -> int:
    from safetensors import safe_open
    with safe_open(str(model), "pt") as f:
        return int(sum(np.prod(f.get_slice(k).get_shape()) for k in f.keys()
                       if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stage", nargs="+", default=["train", "eval"], choices=["train", "eval"])
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    args = ap.parse_args()
    for stage in args.stage:
        {"train": lambda: train(args.rows), "eval": lambda: evaluate(args.rows)}[stage]()


if __name__ == "__main__":
    main()
