"""Clustering all 13,233 LFW faces with the labels hidden, then scored against them.

Embeddings: dlib-r29 of each image's central face (bench/curation_data.py cache). Each
method's similarity cut-off (kNN-graph edges, 1 − eps for DBSCAN, 1 − distance threshold for
average-linkage agglomerative) is tuned for pairwise F on the CelebA subset (4,163 faces), then
used on LFW; the model's verification threshold (0.905) and the reference's DBSCAN eps 0.3 are
shown too. Graph methods: exact FAISS kNN (k = 10) → Leiden / Infomap / connected components.
Baselines: DBSCAN, HDBSCAN (min_cluster_size 2, no cut-off), agglomerative. Scores: pairwise and BCubed precision/recall/F, NMI (unclustered faces count
as singletons), time. LFW is 5,749 people, 4,069 of them with one image: singletons are the
truth for most identities.
Writes bench/results/cluster_lfw.json.

    python bench/cluster_lfw.py
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from faceforge.core.files import atomic_write_json
from faceforge.core.vectors import unit_rows
from faceforge.curate.cluster import GRAPH_METHODS, cluster_embeddings, graph_communities, graph_edges, knn
from faceforge.curate.metrics import clustering_report
from faceforge.models.embedders import known_threshold
from common import machine  # bench/common.py
from curation_data import load  # bench/curation_data.py

RESULTS = Path(__file__).resolve().parent / "results"
K = 10


def run(e: np.ndarray, method: str, cutoff: float | None, sims=None, nbrs=None,
        resolution: float = 1.0) -> tuple[np.ndarray, float]:
    """Labels and seconds; graph methods reuse a kNN computed once (its time is added by the caller)."""
    t0 = time.perf_counter()
    if method in GRAPH_METHODS:
        labels = graph_communities(len(e), *graph_edges(sims, nbrs, cutoff), method=method, resolution=resolution)
    else:
        labels = cluster_embeddings(e, method=method, cutoff=cutoff if cutoff is not None else 0.5)
    return labels, time.perf_counter() - t0


def main() -> None:
    lfw, _, celeba, _ = load()
    t = known_threshold("dlib-r29")
    grid = np.round(np.arange(0.90, 0.9701, 0.005), 3)
    methods = ("leiden", "infomap", "components", "dbscan", "agglomerative")

    # tune each method's cut-off on CelebA (pairwise F), then report on LFW
    ce, cy = unit_rows(celeba["raw"]), celeba["ids"]
    c_sims, c_nbrs = knn(ce, K, index="flat")
    tuned, sweeps = {}, {}
    for method in methods:
        sweeps[method] = [(float(c), clustering_report(cy, run(ce, method, c, c_sims, c_nbrs)[0])["pairwise"]["f"])
                          for c in grid]
        tuned[method] = max(sweeps[method], key=lambda x: x[1])[0]
        print(f"CelebA ({len(ce):,} faces): {method:14s} best cut-off {tuned[method]} "
              f"(pairwise F there {dict(sweeps[method])[tuned[method]]:.4f})", flush=True)
    # Leiden's modularity resolution too (higher splits more), at its tuned cut-off
    sweeps["leiden_resolution"] = [
        (r, clustering_report(cy, run(ce, "leiden", tuned["leiden"], c_sims, c_nbrs, r)[0])["pairwise"]["f"])
        for r in (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)]
    resolution = max(sweeps["leiden_resolution"], key=lambda x: x[1])[0]
    print(f"CelebA: Leiden resolution {resolution} (pairwise F there {dict(sweeps['leiden_resolution'])[resolution]:.4f})")

    e, y = unit_rows(lfw["raw"]), lfw["ids"]
    rows = []

    def record(name: str, labels: np.ndarray, seconds: float, **extra) -> None:
        rep = clustering_report(y, labels)
        rows.append({"method": name, "seconds": seconds, **extra, **rep})
        print(f"{name:58s} pairwise P {rep['pairwise']['precision']:.4f} R {rep['pairwise']['recall']:.4f} "
              f"F {rep['pairwise']['f']:.4f}  BCubed F {rep['bcubed']['f']:.4f}  NMI {rep['nmi']:.4f}  "
              f"clusters {rep['clusters']:5d} singletons {rep['singletons']:5d}  {seconds:6.1f} s", flush=True)

    t0 = time.perf_counter()
    sims, nbrs = knn(e, K, index="flat")
    knn_s = time.perf_counter() - t0
    print(f"LFW: exact kNN (k = {K}) of {len(e):,} faces: {knn_s:.1f} s")
    for method in methods:
        extra = {"knn_s": knn_s} if method in GRAPH_METHODS else {}
        labels, dt = run(e, method, tuned[method], sims, nbrs)
        record(f"{method}, cut-off {tuned[method]} (tuned on CelebA)", labels,
               dt + (knn_s if method in GRAPH_METHODS else 0.0), cutoff=tuned[method], **extra)
        if method == "leiden" and resolution != 1.0:
            labels, dt = run(e, method, tuned[method], sims, nbrs, resolution)
            record(f"leiden, cut-off {tuned[method]}, resolution {resolution} (tuned on CelebA)", labels,
                   dt + knn_s, cutoff=tuned[method], resolution=resolution, **extra)
    labels, dt = run(e, "hdbscan", None)
    record("HDBSCAN (min_cluster_size 2, no cut-off)", labels, dt)
    for method, c in (("leiden", t), ("dbscan", 0.7)):
        labels, dt = run(e, method, c, sims, nbrs)
        what = "the model's verification threshold" if c == t else "the reference's eps 0.3"
        record(f"{method}, cut-off {c} ({what})", labels, dt + (knn_s if method in GRAPH_METHODS else 0.0), cutoff=c)
    ours = rows[0]
    dbscan = next(r for r in rows if r["method"].startswith("dbscan, cut-off") and "tuned" in r["method"])
    hdb = next(r for r in rows if r["method"].startswith("HDBSCAN"))
    print(f"Leiden vs DBSCAN vs HDBSCAN: pairwise F {ours['pairwise']['f']:.4f} / {dbscan['pairwise']['f']:.4f} / "
          f"{hdb['pairwise']['f']:.4f}, BCubed F {ours['bcubed']['f']:.4f} / {dbscan['bcubed']['f']:.4f} / "
          f"{hdb['bcubed']['f']:.4f}, time {ours['seconds']:.1f} / {dbscan['seconds']:.1f} / {hdb['seconds']:.1f} s "
          f"(HDBSCAN {hdb['seconds'] / ours['seconds']:.0f}× Leiden's)")
    atomic_write_json(RESULTS / "cluster_lfw.json", {
        "benchmark": "cluster_lfw", "model": "dlib-r29", "faces": len(e), "identities": len(np.unique(y)),
        "singleton_identities": int((np.unique(y, return_counts=True)[1] == 1).sum()), "k": K, "knn_s": knn_s,
        "tuning": {"dataset": "CelebA subset", "faces": len(ce), "criterion": "pairwise F", "grid": grid.tolist(),
                   "sweeps": sweeps, "tuned": tuned, "leiden_resolution": resolution},
        "machine": machine(),
        "results": rows})


if __name__ == "__main__":
    main()
