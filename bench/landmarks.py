"""Five-point landmarks on the AFLW crops of ../shared/data/landmarks5 (test.txt: 2,995 faces,
other people and wider poses than the LFW crops the hourglass trains on).

Stages (each skips what is done; `faceforge landmarks train` resumes a killed run):
  train     the hourglass with the trimmed loss and with plain MSE (configs/landmarks_*.yaml),
            training time and images/s; the better on validation is exported as the shipped
            weights (src/faceforge/_data/landmarks/hourglass.safetensors + card)
  eval      NME per point and overall, failure rate (NME > 0.1), AUC@0.1 on the test crops for
            YuNet + the hourglass (both losses; the pipeline stage), YuNet, MTCNN and dlib's
            5-point predictor, all on the same padded and enlarged crops, raw and after a mean
            per-point offset fitted on the training list; the network alone on the whole crop
            as a diagnostic; the CED plot; ms/face
  lfw       LFW 10-fold accuracy of sface and dlib-r29 aligned with the hourglass's points
            against the detector's own (YuNet)
Writes bench/results/landmarks.json and landmarks_ced.png.

    python bench/landmarks.py [--stage train eval lfw] [--limit N]
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
from faceforge.core.data import lfw_dir, shared_data_dir
from faceforge.core.files import atomic_write_json
from faceforge.evaluate.plots import plot_ced
from faceforge.landmarks.evaluate import (
    apply_offset,
    detector_predictor,
    fit_offset,
    network_predictor,
    predict_samples,
)
from faceforge.landmarks.labels import read_landmark_list
from faceforge.landmarks.landmarker import SHIPPED, Landmarker, card_file
from faceforge.landmarks.metrics import ced_curve, score_predictions

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RUNS = HERE / "results" / "runs_landmarks"
RESULT = HERE / "results" / "landmarks.json"
CONFIGS = {"hourglass (trimmed loss)": "configs/landmarks_hourglass.yaml",
           "hourglass (plain MSE)": "configs/landmarks_hourglass_mse.yaml"}
DETECTORS = ("yunet", "mtcnn", "dlib")


def _load() -> dict:
    return json.loads(RESULT.read_text()) if RESULT.exists() else {}






def train() -> None:
    res = _load()
    runs = res.setdefault("training", {})
    for name, cfg in CONFIGS.items():
        done = train_output(cfg) / "train.json"
        if not done.exists():
            t0 = time.perf_counter()
            out = run_cli("landmarks", "train", cfg)
            atomic_write_json(done, {**out, "wall_seconds": round(time.perf_counter() - t0, 1)})
        out = json.loads(done.read_text())
        runs[name] = {"config": cfg, "wall_seconds": out["wall_seconds"], "steps": out["steps"], "best": out["best"],
                      "images_per_s": [h.get("images_per_s") for h in out["history"]]}
        _export(name, cfg)
    best = max(CONFIGS, key=lambda n: runs[n]["best"]["val_auc"])
    SHIPPED.parent.mkdir(parents=True, exist_ok=True)
    src = RUNS / f"{Path(CONFIGS[best]).stem}.safetensors"
    shutil.copy(src, SHIPPED)
    card = json.loads(card_file(src).read_text())
    card.update(name="hourglass", weights=SHIPPED.name,
                training=f"faceforge landmarks train {CONFIGS[best]} (best epoch by validation CED AUC@0.1) "
                         "on the 4,151 hand-labelled LFW crops of the Sun-Wang-Tang 5-point set, 10 % held out",
                licence="weights trained by FaceForge on research data (LFW, Sun et al. labels): research use")
    card_file(SHIPPED).write_text(json.dumps(card, indent=2) + "\n")
    res["shipped"] = {"from": best, "val_auc": runs[best]["best"]["val_auc"]}
    atomic_write_json(RESULT, res)


def _export(name: str, cfg: str) -> Path:
    path = RUNS / f"{Path(cfg).stem}.safetensors"
    if not path.exists():
        run_cli("export", "safetensors", str(train_output(cfg) / "best.pt"), "-o", str(path))
    return path


def evaluate(limit: int | None) -> None:
    marks = shared_data_dir() / "landmarks5"
    test = read_landmark_list(marks / "test.txt")[:limit]
    fit = read_landmark_list(marks / "train.txt")[:limit]
    truth = np.stack([s.points for s in test]).astype(np.float64)
    fit_truth = np.stack([s.points for s in fit]).astype(np.float64)
    from faceforge.landmarks.landmarker import RefinedDetector
    from faceforge.vision.detectors import create_detector
    # the hourglass as the pipeline uses it: YuNet finds the face on the same padded, enlarged
    # crop the detectors get, the network refines its points (keeping YuNet's where unsure);
    # and, as a diagnostic, the network alone on the whole crop, which only works when a crop
    # is framed like the LFW training crops (AFLW's faces are about 1.8 times larger in theirs)
    nets = {name: RUNS / f"{Path(cfg).stem}.safetensors" for name, cfg in CONFIGS.items()
            if (RUNS / f"{Path(cfg).stem}.safetensors").exists()}
    predictors = {f"yunet + {name}": detector_predictor(RefinedDetector(create_detector("yunet"), Landmarker.load(w)))
                  for name, w in nets.items()}
    predictors.update({d: detector_predictor(create_detector(d)) for d in DETECTORS})
    predictors.update({f"{name}, whole crop (diagnostic)": network_predictor(Landmarker.load(w))
                       for name, w in nets.items()})
    rows, curves, corrected_curves = [], {}, {}
    for name, predictor in predictors.items():
        t0 = time.perf_counter()
        pred = predict_samples(test, predictor, name)
        ms = 1000 * (time.perf_counter() - t0) / len(test)
        raw, per_face = score_predictions(pred, truth)
        offset = fit_offset(predict_samples(fit, predictor, f"{name} (offset fit)"), fit_truth)
        corrected, per_face_c = score_predictions(apply_offset(pred, offset), truth)
        # diagnostic: do the AFLW labels share the LFW labels' convention? An offset fitted on
        # the odd AFLW crops, scored on the even ones (against the even ones raw)
        half = fit_offset(pred[1::2], truth[1::2])
        even_raw, _ = score_predictions(pred[0::2], truth[0::2])
        even_aflw, _ = score_predictions(apply_offset(pred[0::2], half), truth[0::2])
        rows.append({"predictor": name, "raw": raw, "offset_corrected": corrected,
                     "offset_per_point_iod": offset.round(4).tolist(), "ms_per_face_one_at_a_time": round(ms, 2),
                     "aflw_half_diagnostic": {"even_crops_raw_nme": even_raw["nme"],
                                              "even_crops_nme_offset_from_odd_aflw": even_aflw["nme"],
                                              "offset_per_point_iod": half.round(4).tolist()}})
        curves[name] = ced_curve(per_face)
        corrected_curves[name] = {"offset-corrected": ced_curve(per_face_c)}
        rows[-1]["ced"] = {k: [np.round(c, 4).tolist() for c in v]
                           for k, v in (("raw", curves[name]), ("offset_corrected", ced_curve(per_face_c)))}
        print(f"{name:28s} NME {100 * raw['nme']:5.2f} % → {100 * corrected['nme']:5.2f} % corrected, failures "
              f"{100 * raw['failure_rate']:5.2f} → {100 * corrected['failure_rate']:5.2f} %, found {raw['found']}"
              f"/{len(test)}, {ms:.1f} ms/face")
    plot_ced(curves, HERE / "results" / "landmarks_ced.png", "AFLW crops (landmarks5 test.txt)", corrected_curves)
    res = _load()
    res.update({"benchmark": "five-point landmarks on the AFLW crops of landmarks5/test.txt",
                "test_faces": len(test), "offset_fitted_on": "landmarks5/train.txt (LFW crops)",
                "detector_input": "each crop padded by half its side (replicated border) and enlarged ×4",
                "rows": rows, "machine": {"torch_threads": torch.get_num_threads(), "device": "cpu"}})
    if SHIPPED.exists():
        res["batched_ms_per_face"] = _batched_speed(Landmarker.load())
    atomic_write_json(RESULT, res)


def _batched_speed(lm: Landmarker, n: int = 256) -> dict:
    crops = np.random.default_rng(0).integers(0, 256, (n, lm.size, lm.size, 3), dtype=np.uint8)
    out = {}
    for batch in (1, 64):
        lm.predict_crops(crops[:batch], batch)
        t0 = time.perf_counter()
        lm.predict_crops(crops[:n if batch > 1 else 32], batch)
        out[f"batch_{batch}"] = round(1000 * (time.perf_counter() - t0) / (n if batch > 1 else 32), 2)
    return out


def lfw(folds: int | None) -> None:
    from faceforge.evaluate.lfw import evaluate_lfw
    from faceforge.pipeline import FacePipeline
    rows = []
    for model in ("sface", "dlib-r29"):
        for landmarker in (None, "hourglass"):
            r = evaluate_lfw(lfw_dir(), FacePipeline("yunet", model, device="cpu", landmarker=landmarker), folds)
            r.pop("_raw")
            rows.append({k: r[k] for k in ("detector", "model", "accuracy_mean", "accuracy_std", "no_face_found",
                                           "ms_per_image")})
            print(f"{r['model']:9s} {r['detector']:16s} {100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f}")
    res = _load()
    res["lfw_downstream"] = {"protocol": "LFW pairs.txt 10-fold", "rows": rows,
                             "note": "the hourglass trained on LFW crops with their points, not identities"}
    atomic_write_json(RESULT, res)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stage", nargs="+", default=["train", "eval", "lfw"], choices=["train", "eval", "lfw"])
    ap.add_argument("--limit", type=int, default=None, help="eval: the first N faces of each list (a quick check)")
    ap.add_argument("--folds", type=int, default=None, help="lfw: the first N folds (a quick check)")
    args = ap.parse_args()
    for stage in args.stage:
        {"train": train, "eval": lambda: evaluate(args.limit), "lfw": lambda: lfw(args.folds)}[stage]()


if __name__ == "__main__":
    main()
