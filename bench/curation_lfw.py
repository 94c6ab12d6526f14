"""Noisy-label filtering on LFW: how many planted wrong images each method finds.

Data (deterministic, seed 0): every LFW identity with ≥ 5 images keeps its own images and
receives foreign faces — random images of other LFW people, as many as make 20 % of the
resulting folder — and 2 non-face crops (one of scikit-image's lfw_subset non-faces, one
procedural fractal), embedded by dlib-r29 as if they were aligned faces.
Quality: the QAA regressor trained on the CelebA subset (nothing of LFW is seen). The same
noisy construction on the CelebA subset is the tuning set for the margin and the fixed
threshold; LFW only reports.
Methods, each per identity: graph filtering (label propagation; Leiden) with quality at the
margin tuned on CelebA (dlib-r29's package default), at the reference's 0.1 scaled to
dlib-r29's cosines and unscaled; without quality at the threshold tuned on CelebA (the
package default) and at the model's verification threshold 0.905; DBSCAN at the reference's
eps 0.3 and at 1 − the tuned threshold; elbow-DBSCAN.
Scores: precision/recall/F1 of the images flagged as noise, the recall on foreign faces and on
non-faces separately, the purity of the kept set, time.
Writes bench/results/curation.json.

    python bench/curation_lfw.py
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from faceforge.core.files import atomic_write_json
from faceforge.core.vectors import unit_rows
from faceforge.curate.graph_filter import filter_dataset, identity_rows, scaled_margin
from faceforge.curate.metrics import noise_prf
from faceforge.models.embedders import known_threshold
from common import machine  # bench/common.py
from curation_data import load  # bench/curation_data.py

RESULTS = Path(__file__).resolve().parent / "results"
MIN_IMAGES, FOREIGN_SHARE, NONFACES_PER_ID = 5, 0.20, 2  # non-faces: one of each kind


def noisy_set(ids: np.ndarray, nonface_names: np.ndarray, seed: int = 0) -> dict:
    """Rows: index into the dataset or (−1 − index) into the non-face pool; the folder they are
    filed under; the kind of each row (own, foreign, nonface)."""
    rng = np.random.default_rng(seed)
    names, counts = np.unique(ids, return_counts=True)
    chosen = names[counts >= MIN_IMAGES]
    n_subset = int(sum(n.startswith("lfw_subset") for n in nonface_names))
    rows, folder, kind = [], [], []
    for name in chosen:
        own = np.flatnonzero(ids == name)
        n_foreign = int(round(len(own) * FOREIGN_SHARE / (1 - FOREIGN_SHARE)))
        foreign = rng.choice(np.flatnonzero(ids != name), n_foreign, replace=False)
        nf = np.array([-1 - int(rng.integers(0, n_subset)),
                       -1 - int(rng.integers(n_subset, len(nonface_names)))], np.int64)
        rows.append(np.concatenate([own, foreign, nf]))
        folder += [name] * len(rows[-1])
        kind += ["own"] * len(own) + ["foreign"] * len(foreign) + ["nonface"] * len(nf)
    return {"rows": np.concatenate(rows), "folder": np.array(folder), "kind": np.array(kind), "identities": len(chosen)}


def gather(rows: np.ndarray, values: np.ndarray, nonface_values: np.ndarray) -> np.ndarray:
    out = np.empty((len(rows),) + values.shape[1:], np.float32)
    face = rows >= 0
    out[face] = values[rows[face]]
    out[~face] = nonface_values[-1 - rows[~face]]
    return out


def prepare(arrays: dict, nonface: dict, est) -> dict:
    """The noisy set of one dataset with its unit embeddings and QAA raw quality."""
    data = noisy_set(arrays["ids"], nonface["names"])
    data["emb"] = unit_rows(gather(data["rows"], arrays["raw"], nonface["raw"]))
    data["quality"] = est.predict(gather(data["rows"], arrays["features"], nonface["features"]))
    return data


def evaluate(data: dict, **kw) -> dict:
    t0 = time.perf_counter()
    res = filter_dataset(data["emb"], data["folder"], **kw)
    dt = time.perf_counter() - t0
    keep = np.zeros(len(data["emb"]), bool)
    for ident, rows in identity_rows(data["folder"]).items():
        keep[rows] = res[ident].keep
    score = noise_prf(~keep, data["kind"] != "own")
    for k in ("foreign", "nonface"):
        score[f"{k}_recall"] = float((~keep[data["kind"] == k]).mean())
    score["own_lost"] = float((~keep[data["kind"] == "own"]).mean())
    return {"seconds": dt, **score}


def tune(data: dict, grid: np.ndarray, key: str, **kw) -> tuple[float, list]:
    """The grid value with the best noise F1 on the tuning set."""
    sweep = [(float(v), evaluate(data, **{key: float(v)}, **kw)["f1"]) for v in grid]
    return max(sweep, key=lambda x: x[1])[0], sweep


def main() -> None:
    lfw, nonface, celeba, est = load()
    tuning, data = prepare(celeba, nonface, est), prepare(lfw, nonface, est)
    t = known_threshold("dlib-r29")
    m = scaled_margin(t)
    for label, d in (("CelebA (tuning)", tuning), ("LFW (report)", data)):
        print(f"{label}: {d['identities']} identities, {len(d['emb'])} images: "
              + ", ".join(f"{int((d['kind'] == k).sum())} {k}" for k in ("own", "foreign", "nonface"))
              + "; QAA raw quality median " + ", ".join(f"{k} {np.median(d['quality'][d['kind'] == k]):.4f}"
                                                         for k in ("own", "foreign", "nonface")))
    margin_tuned, margin_sweep = tune(tuning, np.round(np.arange(0.0, 0.0801, 0.005), 3), "margin",
                                      method="label_propagation", quality=tuning["quality"])
    thr_tuned, thr_sweep = tune(tuning, np.round(np.arange(0.85, 0.951, 0.005), 3), "threshold",
                                method="label_propagation")
    print(f"tuned on CelebA: margin {margin_tuned} (noise F1 there {dict(margin_sweep)[margin_tuned]:.3f}), "
          f"threshold without quality {thr_tuned} (F1 {dict(thr_sweep)[thr_tuned]:.3f})")
    for which, value in (("filter_margin", margin_tuned), ("filter", thr_tuned)):
        shipped = known_threshold("dlib-r29", which)
        print(f"dlib-r29 {which}: package default {shipped}, tuned here {value}"
              + ("" if shipped == value else "  ← differs: update the dlib-r29 card in models/cards.py"))
    q = data["quality"]
    methods = {
        f"graph + quality, label propagation, margin {margin_tuned} (tuned on CelebA; default)":
            dict(method="label_propagation", quality=q, margin=margin_tuned),
        f"graph + quality, label propagation, margin {m:.4f} (0.1 scaled to the model)":
            dict(method="label_propagation", quality=q, margin=m),
        f"graph + quality, Leiden, margin {margin_tuned} (tuned on CelebA)":
            dict(method="leiden", quality=q, margin=margin_tuned),
        "graph + quality, label propagation, margin 0.1 (reference, unscaled)":
            dict(method="label_propagation", quality=q, margin=0.1),
        f"graph without quality, label propagation, threshold {thr_tuned} (tuned on CelebA; default)":
            dict(method="label_propagation", threshold=thr_tuned),
        f"graph without quality, label propagation, threshold {t} (model's verification)":
            dict(method="label_propagation", threshold=t),
        f"graph without quality, Leiden, threshold {thr_tuned} (tuned on CelebA)": dict(method="leiden", threshold=thr_tuned),
        "DBSCAN eps 0.3 (reference)": dict(method="dbscan", eps=0.3),
        f"DBSCAN eps {1 - thr_tuned:.3f} (= 1 − tuned threshold)": dict(method="dbscan", eps=1 - thr_tuned),
        "elbow-DBSCAN (k = ⌊0.1·n⌋)": dict(method="elbow-dbscan"),
    }
    results = []
    for name, kw in methods.items():
        score = evaluate(data, **kw)
        results.append({"method": name, **score})
        print(f"{name:76s} P {score['precision']:.3f} R {score['recall']:.3f} F1 {score['f1']:.3f} "
              f"purity {score['kept_purity']:.4f}  foreign R {score['foreign_recall']:.3f} non-face R "
              f"{score['nonface_recall']:.3f}  own lost {score['own_lost']:.3f}  {score['seconds']:.1f} s")
    base = next(r for r in results if r["method"].startswith("DBSCAN eps 0.3"))
    for ours in (results[0], results[4]):
        print(f"{ours['method'].split(',')[0]} vs the reference DBSCAN: F1 {ours['f1']:.3f} vs {base['f1']:.3f}, "
              f"kept purity {ours['kept_purity']:.4f} vs {base['kept_purity']:.4f} (unfiltered "
              f"{1 - ours['noise'] / len(data['emb']):.4f})")
    atomic_write_json(RESULTS / "curation.json", {
        "benchmark": "curation_lfw", "model": "dlib-r29", "quality": "QAA trained on the CelebA subset",
        "quality_train": est.manifest["train"],
        "data": {"identities": data["identities"], "images": len(data["emb"]), "min_images": MIN_IMAGES,
                 "foreign_share": FOREIGN_SHARE, "nonfaces_per_identity": NONFACES_PER_ID,
                 **{k: int((data["kind"] == k).sum()) for k in ("own", "foreign", "nonface")},
                 "lfw_images_without_detection": int((~lfw["found"]).sum())},
        "tuning_set": {"dataset": "CelebA subset", "identities": tuning["identities"], "images": len(tuning["emb"]),
                       "margin_sweep": margin_sweep, "threshold_sweep": thr_sweep,
                       "margin_tuned": margin_tuned, "threshold_tuned": thr_tuned},
        "quality_median": {k: float(np.median(q[data["kind"] == k])) for k in ("own", "foreign", "nonface")},
        "threshold": t, "scaled_margin": m,
        "machine": machine(),
        "results": results})


if __name__ == "__main__":
    main()
