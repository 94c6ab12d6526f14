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
                         [--jobs 4 --num-workers 3]   # rows side by side on one large GPU

Each row records the device it was trained on and the one its embedding time was measured on.
"""
from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common import FACEFORGE, REPO, run_cli, train_output  # bench/common.py
from faceforge.core.data import shared_data_dir
from faceforge.core.files import atomic_write_json
from faceforge.evaluate.plots import plot_cmc

HERE = Path(__file__).resolve().parent
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


def device_name(device: str) -> str:
    """What a row ran on, in words: the GPU's name, or the CPU with torch's thread count."""
    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return torch.cuda.get_device_name(0)
    return f"cpu ({torch.get_num_threads()} threads)"


def train(rows: list[str], jobs: int = 1, num_workers: int | None = None) -> None:
    """`faceforge train` each row not yet done, `jobs` of them at a time (a large GPU is
    left mostly idle by one 128 × 64 run); wall times then cover runs sharing the device."""
    todo = [r for r in rows if not (train_output(ROWS[r][0]) / "train.json").exists()]
    extra = ["--num-workers", str(num_workers)] if num_workers is not None else []
    running: dict[str, tuple[subprocess.Popen, float, bool]] = {}
    failed: list[str] = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped by a time limit: stop the runs too
    try:
        _train_all(todo, running, jobs, extra, failed)
    finally:
        for proc, _, _ in running.values():
            proc.terminate()  # each keeps its last checkpoint; a rerun resumes it
    if failed:
        raise SystemExit(f"training failed for {', '.join(failed)}")


def _config_here(row: str) -> str:
    """The row's committed config, or where the CUHK03 folder it names is not beside the
    checkout, a copy of it (in its run folder) reading the one $FACEFORGE_DATA points at."""
    from faceforge.train.config import load_yaml
    cfg = ROWS[row][0]
    d = load_yaml(REPO / cfg)
    root = Path(d["data"]["root"])
    if (REPO / root).exists() or "reid_cuhk03" not in root.parts:
        return cfg
    d["data"]["root"] = str(shared_data_dir().joinpath(*root.parts[root.parts.index("reid_cuhk03"):]))
    here = train_output(cfg) / "config.yaml"
    import yaml
    here.parent.mkdir(parents=True, exist_ok=True)
    here.write_text(yaml.safe_dump(d, sort_keys=False))
    return str(here)


def _train_all(todo: list[str], running: dict, jobs: int, extra: list[str], failed: list[str]) -> None:
    while todo or running:
        while todo and len(running) < jobs:
            row = todo.pop(0)
            run = train_output(ROWS[row][0])
            run.mkdir(parents=True, exist_ok=True)
            with open(run / "train.stdout.json", "w") as out, open(run / "train.log", "w") as log:
                proc = subprocess.Popen([*FACEFORGE, "train", _config_here(row), *extra, "--json"], cwd=REPO,
                                        stdout=out, stderr=log, text=True)
            running[row] = (proc, time.perf_counter(), (run / "last.pt").exists())
        time.sleep(1)
        for row, (proc, t0, resumed) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[row]
            run = train_output(ROWS[row][0])
            if proc.returncode:  # the others go on; the stage fails at the end
                failed.append(row)
                print(f"{row}: faceforge train failed, see {run / 'train.log'}")
                continue
            out = json.loads((run / "train.stdout.json").read_text())
            covers = "the resumed part only" if resumed else "the whole run"
            if jobs > 1:
                covers += f", up to {jobs} rows sharing the device"
            atomic_write_json(run / "train.json", {**out, "wall_seconds": round(time.perf_counter() - t0, 1),
                                                   "wall_covers": covers, "device": device_name("auto")})
            print(f"{row}: trained in {time.perf_counter() - t0:.0f} s")


def evaluate(rows: list[str], device: str = "cpu") -> None:
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
                  "--rerank", "--device", device, "--out", str(run / "eval"), "--overwrite")
        trained = json.loads((run / "train.json").read_text())
        history = trained["history"]
        table[row] = {
            "compares": label, "config": cfg, "ranking": ev["ranking"], "reranked": ev["reranked"],
            "pair_accuracy": ev["pair_accuracy"], "cmc": ev["cmc"], "embed_ms_per_image": ev["ms_per_image"],
            "best_epoch": trained["best"]["epoch"], "val_map_best": trained["best"]["val_map"],
            "epochs": len(history), "train_wall_seconds": trained["wall_seconds"],
            "train_wall_covers": trained.get("wall_covers", "the whole run"),
            "trained_on": trained.get("device", "cpu (2 threads)"), "embed_measured_on": device_name(device),
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
        sheet = train_output(ROWS[best][0]) / "eval" / "retrieval.png"
        if sheet.exists():  # else the best row was scored elsewhere: its sheet stays
            shutil.copy(sheet, HERE / "results" / "reid_retrieval.png")
            res["retrieval_sheet_of"] = best
    res.update({"benchmark": "person re-id on CUHK03 (detected crops): 743 training people, 100 test people",
                "protocol": "queries: camera 0 of the test people; gallery: camera 1; same person in the same "
                            "camera never counts; pair accuracy on all same-person cross-camera pairs and as "
                            "many random different-person ones, threshold chosen on the training people",
                "pretraining": "none: every model starts from random weights (no ImageNet weights offline)"})
    old = res.pop("machine", None)  # each row now says where it was trained and timed
    if old:  # rows from before: the one machine the file named
        where = f"{old['device']} ({old['torch_threads']} threads)"
        for r in table.values():
            r.setdefault("trained_on", where)
            r.setdefault("embed_measured_on", where)
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
    ap.add_argument("--jobs", type=int, default=1, help="rows trained at the same time")
    ap.add_argument("--num-workers", type=int, help="data-loading processes of each training")
    ap.add_argument("--eval-device", default="cpu")
    args = ap.parse_args()
    for stage in args.stage:
        {"train": lambda: train(args.rows, args.jobs, args.num_workers),
         "eval": lambda: evaluate(args.rows, args.eval_device)}[stage]()


if __name__ == "__main__":
    main()
