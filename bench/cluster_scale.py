"""Clustering at scale: synthetic 512-d face embeddings, 100k → 1M, on the CPU.

Data: a von Mises–Fisher mixture. Identity sizes are long-tailed (Pareto, 1…2,000 images,
mean ≈ 10); centres are uniform on the sphere; each identity has its own concentration
(mean cosine to its centre drawn in 0.55…0.80, as ArcFace-like models give), and a tenth of
its images come from a looser component of the same centre (mean cosine 0.35: blurred, turned,
occluded shots). Concentrations κ from the mean cosine by Banerjee's approximation; samples by
Wood's algorithm.

Method: FAISS IVF kNN (k = 10, nlist = 4·√n, nprobe 16), edges with cosine ≥ 0.3, Leiden.
Baseline in the same run: exact FAISS kNN (flat) on the 100k set for the kNN time and recall,
and scikit-learn DBSCAN (cosine, eps 0.7 ⇔ the same cut-off) on the 100k set.
Each size runs in its own process, so peak memory (ru_maxrss) is per size.
Writes bench/results/cluster_scale.json.

    python bench/cluster_scale.py [--sizes 100000 300000 1000000]
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from faceforge.core.files import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results"
DIM, K, CUTOFF, NPROBE = 512, 10, 0.3, 16


def kappa_for(mean_cos: np.ndarray, d: int) -> np.ndarray:
    """Banerjee et al.'s approximation of κ from the mean resultant length."""
    m = np.asarray(mean_cos, np.float64)
    return m * (d - m ** 2) / (1 - m ** 2)


def vmf_cosines(kappa: np.ndarray, d: int, rng: np.random.Generator) -> np.ndarray:
    """Wood (1994): the cosine w to the mean direction of one vMF sample per κ."""
    kappa = np.asarray(kappa, np.float64)
    b = (-2 * kappa + np.sqrt(4 * kappa ** 2 + (d - 1) ** 2)) / (d - 1)
    x0 = (1 - b) / (1 + b)
    c = kappa * x0 + (d - 1) * np.log(1 - x0 ** 2)
    w = np.empty_like(kappa)
    todo = np.arange(len(kappa))
    while len(todo):
        z = rng.beta((d - 1) / 2, (d - 1) / 2, len(todo))
        cand = (1 - (1 + b[todo]) * z) / (1 - (1 - b[todo]) * z)
        ok = kappa[todo] * cand + (d - 1) * np.log(1 - x0[todo] * cand) - c[todo] >= np.log(rng.random(len(todo)))
        w[todo[ok]] = cand[ok]
        todo = todo[~ok]
    return w


def synthetic(n: int, d: int = DIM, seed: int = 0, chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """n unit vectors (float32) and their identity labels."""
    rng = np.random.default_rng(seed)
    sizes = []
    total = 0
    while total < n:  # Pareto(α = 1.2) + 1, capped, until n images
        s = np.minimum(1 + np.floor(rng.pareto(1.2, 4096) * 3).astype(np.int64), 2000)
        sizes.append(s)
        total += s.sum()
    sizes = np.concatenate(sizes)
    sizes = sizes[:np.searchsorted(np.cumsum(sizes), n) + 1]
    sizes[-1] -= sizes.sum() - n
    labels = np.repeat(np.arange(len(sizes)), sizes)
    centres = rng.standard_normal((len(sizes), d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    mean_cos = rng.uniform(0.55, 0.80, len(sizes))[labels]
    loose = rng.random(n) < 0.1
    mean_cos[loose] = 0.35
    w = vmf_cosines(kappa_for(mean_cos, d), d, rng).astype(np.float32)
    x = np.empty((n, d), np.float32)
    for i in range(0, n, chunk):
        mu = centres[labels[i:i + chunk]]
        v = rng.standard_normal((len(mu), d)).astype(np.float32)
        v -= (v * mu).sum(axis=1, keepdims=True) * mu
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        wi = w[i:i + chunk, None]
        x[i:i + chunk] = wi * mu + np.sqrt(1 - wi ** 2) * v
    return x, labels


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def one(n: int, baselines: bool) -> dict:
    from faceforge.curate.cluster import graph_communities, graph_edges, knn
    from faceforge.curate.metrics import bcubed_prf, nmi, pairwise_prf
    t0 = time.perf_counter()
    x, y = synthetic(n)
    gen_s = time.perf_counter() - t0
    out = {"n": n, "identities": int(y.max() + 1), "largest_identity": int(np.bincount(y).max()),
           "singleton_identities": int((np.bincount(y) == 1).sum()), "generate_s": gen_s}
    t0 = time.perf_counter()
    sims, nbrs = knn(x, K, index="ivf", nprobe=NPROBE)
    out["knn_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    edges = graph_edges(sims, nbrs, CUTOFF)
    out["edges"] = int(len(edges[0]))
    out["graph_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    labels = graph_communities(n, *edges, method="leiden")
    out["leiden_s"] = time.perf_counter() - t0
    out["cluster_s"] = out["knn_s"] + out["graph_s"] + out["leiden_s"]
    out["pairwise"], out["bcubed"] = pairwise_prf(y, labels), bcubed_prf(y, labels)
    out["nmi"] = nmi(y, labels)
    out["clusters"] = int(labels.max() + 1)
    out["unclustered"] = int((labels < 0).sum())
    if baselines:
        t0 = time.perf_counter()
        _, exact = knn(x, K, index="flat")
        out["exact_knn_s"] = time.perf_counter() - t0
        out["ivf_knn_recall_at_10"] = float(np.mean((nbrs[:, :, None] == exact[:, None, :]).any(axis=2)))
        from sklearn.cluster import DBSCAN
        t0 = time.perf_counter()
        db = DBSCAN(eps=1 - CUTOFF, min_samples=2, metric="cosine", n_jobs=-1).fit(x).labels_
        out["sklearn_dbscan_s"] = time.perf_counter() - t0
        out["sklearn_dbscan"] = {"pairwise": pairwise_prf(y, db), "bcubed": bcubed_prf(y, db)}
    out["peak_rss_gib"] = peak_rss_gib()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--baselines", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.baselines)))
        return
    runs = []
    for i, n in enumerate(args.sizes):
        t0 = time.perf_counter()
        cmd = [sys.executable, __file__, "--one", str(n)] + (["--baselines"] if i == 0 else [])
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        r["process_wall_s"] = time.perf_counter() - t0
        runs.append(r)
        line = (f"n={n:>9,}  kNN {r['knn_s']:6.1f} s  graph {r['graph_s']:5.1f} s  Leiden {r['leiden_s']:6.1f} s  "
                f"total {r['cluster_s']:6.1f} s  peak {r['peak_rss_gib']:.2f} GiB  "
                f"pairwise F {r['pairwise']['f']:.4f}  BCubed F {r['bcubed']['f']:.4f}")
        print(line, flush=True)
        if "sklearn_dbscan_s" in r:
            print(f"   baseline at n={n:,}: exact kNN {r['exact_knn_s']:.1f} s (IVF {r['exact_knn_s'] / r['knn_s']:.1f}× "
                  f"faster, recall@10 {r['ivf_knn_recall_at_10']:.4f}); sklearn DBSCAN {r['sklearn_dbscan_s']:.1f} s "
                  f"(ours {r['sklearn_dbscan_s'] / r['cluster_s']:.1f}× faster), pairwise F "
                  f"{r['sklearn_dbscan']['pairwise']['f']:.4f}, BCubed F {r['sklearn_dbscan']['bcubed']['f']:.4f}",
                  flush=True)
    first, last = runs[0], runs[-1]
    scaling = {"size_ratio": last["n"] / first["n"], "time_ratio": last["cluster_s"] / first["cluster_s"],
               "memory_ratio": last["peak_rss_gib"] / first["peak_rss_gib"]}
    print(f"{first['n']:,} → {last['n']:,}: {scaling['size_ratio']:.0f}× the faces, "
          f"{scaling['time_ratio']:.1f}× the time, {scaling['memory_ratio']:.1f}× the peak memory")
    atomic_write_json(RESULTS / "cluster_scale.json", {
        "benchmark": "cluster_scale", "dim": DIM, "k": K, "cutoff": CUTOFF, "nprobe": NPROBE,
        "method": "FAISS IVF kNN + cut-off + Leiden (igraph, modularity, resolution 1)",
        "machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform()},
        "runs": runs, "scaling": scaling})


if __name__ == "__main__":
    main()
