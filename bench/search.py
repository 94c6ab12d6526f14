"""Gallery search at scale: 100k and 1M random unit vectors of 128 and 512 dimensions.

For each size and dimension, in the same run: numpy brute force (the baseline, and the exact
top-10 every recall is measured against), then every gallery as a user opens it
(faceforge.search.open_gallery, the parameters users get): FAISS flat and HNSW, Milvus Lite
(the embedded default, FLAT index, searched through the in-process copy that a process
builds after 256 searches: here from the first, its load timed as the first search) and
Milvus Lite's own engine answering the same searches (`milvus-lite-engine`, the copy off). Each
backend runs in its own process so its memory is its own: build time (enrolment), the first
search apart (it loads the collection, and for Lite its copy), queries per second and
milliseconds per query at batch 1 and 256, recall@10 against exact search, peak resident
memory above the data itself.

    python bench/search.py                      # 100k and 1M, 128-d and 512-d
    python bench/search.py --sizes 100000       # a quicker run
    python bench/search.py --data clustered --sizes 100000 --merge   # face-like data, added to the file

Writes bench/results/search.json.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import machine  # bench/common.py

RESULTS = Path(__file__).resolve().parent / "results"
BACKENDS = ("numpy", "faiss-flat", "faiss-hnsw", "milvus-lite", "milvus-lite-engine")
K = 10
N_QUERIES = 1000
BATCH = 256
SINGLE_BUDGET_S = 20.0  # batch-1 queries run until this much time or all queries are done


def data(n: int, d: int, kind: str = "random") -> tuple[np.ndarray, np.ndarray]:
    """random: unit vectors with no structure (every cosine ≈ 0), the worst case for graph and
    list indexes. clustered: face-like — identities of 1–50 images (geometric sizes, mean 10)
    around random centres at a mean cosine of 0.7, queries new images of enrolled identities."""
    rng = np.random.default_rng(n + d)
    if kind == "random":
        x = rng.standard_normal((n, d), dtype=np.float32)
        q = np.random.default_rng(7).standard_normal((N_QUERIES, d), dtype=np.float32)
    else:
        sizes = np.minimum(rng.geometric(0.1, size=n), 50)
        ident = np.repeat(np.arange(len(sizes)), sizes)[:n]
        centres = rng.standard_normal((ident[-1] + 1, d), dtype=np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        spread = np.float32(np.sqrt((1 / 0.7**2 - 1) / d))  # |noise|² ≈ d·s² puts cos(x, centre) near 0.7
        x = centres[ident] + spread * rng.standard_normal((n, d), dtype=np.float32)
        qrng = np.random.default_rng(7)
        q = centres[ident[qrng.integers(0, n, N_QUERIES)]] + spread * qrng.standard_normal((N_QUERIES, d),
                                                                                          dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x, q


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def numpy_search(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    s = q @ x.T
    top = np.argpartition(-s, K - 1, axis=1)[:, :K]
    order = np.argsort(-np.take_along_axis(s, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


def run_backend(backend: str, n: int, d: int, kind: str, truth_path: Path) -> dict:
    """Child process: build one backend, time its searches, report."""
    x, q = data(n, d, kind)
    base_rss = rss_gib()
    tmp = tempfile.TemporaryDirectory()
    t0, first_s = time.perf_counter(), 0.0
    if backend == "numpy":
        search = lambda qq: numpy_search(x, qq)  # noqa: E731
    else:
        from faceforge.search.gallery import Records, open_gallery
        if backend.startswith("faiss"):
            g = open_gallery(f"faiss:{tmp.name}/g", index="flat" if backend == "faiss-flat" else "hnsw",
                             device="cpu")
        else:
            g = open_gallery(f"{tmp.name}/g.db")
            g.mirror_searches = backend == "milvus-lite"
            g.mirror_after_calls = 0  # a long-running process's steady state; the load is first_search_s
        chunk = 50_000
        for a in range(0, n, chunk):
            ids = [str(i) for i in range(a, min(a + chunk, n))]
            g.add(Records(ids, ids, ids, [0] * len(ids), x[a:a + chunk]), "bench")
        key_to_row = lambda h: int(h.path)  # noqa: E731
        search = lambda qq: np.array([[key_to_row(h) for h in hits] for hits in g.search(qq, K)])  # noqa: E731
        t1 = time.perf_counter()
        search(q[:1])  # the first search loads the collection (and Lite's copy) into memory
        first_s = time.perf_counter() - t1
    build_s = time.perf_counter() - t0
    # batch 1: as many single queries as fit the budget
    got1, t0 = [], time.perf_counter()
    for i in range(N_QUERIES):
        got1.append(search(q[i:i + 1])[0])
        if time.perf_counter() - t0 > SINGLE_BUDGET_S and i >= 9:
            break
    single_s = time.perf_counter() - t0
    # batch 256
    t0 = time.perf_counter()
    got = np.vstack([search(q[a:a + BATCH]) for a in range(0, N_QUERIES, BATCH)])
    batch_s = time.perf_counter() - t0
    res = {"backend": backend, "n": n, "d": d, "data": kind, "build_s": round(build_s, 2),
           "first_search_s": round(first_s, 2), "qps_batch1": round(len(got1) / single_s, 1),
           "ms_per_query_batch1": round(1000 * single_s / len(got1), 2), "batch1_queries": len(got1),
           "qps_batch256": round(N_QUERIES / batch_s, 1),
           "peak_rss_gib": round(rss_gib(), 2), "peak_rss_above_data_gib": round(rss_gib() - base_rss, 2)}
    if backend == "numpy":
        np.save(truth_path, got)
    truth = np.load(truth_path)
    res["recall_at_10"] = round(float(np.mean([len(set(a) & set(b)) / K for a, b in zip(got, truth)])), 4)
    res["batch1_equals_batch256"] = bool(all(np.array_equal(a, b) for a, b in zip(got1, got)))
    if backend != "numpy":
        g.close()
    tmp.cleanup()
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dims", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--backends", nargs="+", default=list(BACKENDS))
    ap.add_argument("--data", default="random", choices=["random", "clustered"])
    ap.add_argument("--merge", action="store_true", help="keep other configurations already in search.json")
    ap.add_argument("--max-rss-gib", type=float, default=16.0, help="stop a backend whose memory passes this")
    ap.add_argument("--child", nargs=4, metavar=("BACKEND", "N", "D", "DATA"), help=argparse.SUPPRESS)
    ap.add_argument("--truth", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_backend(args.child[0], int(args.child[1]), int(args.child[2]), args.child[3],
                                     args.truth)))
        return
    out = RESULTS / "search.json"
    rows = json.loads(out.read_text())["results"] if args.merge and out.exists() else []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            for d in args.dims:
                truth = Path(tmp) / f"truth_{n}_{d}.npy"
                for backend in ["numpy"] + [b for b in args.backends if b != "numpy"]:
                    r = run_child(backend, n, d, args.data, truth, args.max_rss_gib)
                    rows = [x for x in rows if key(x) != (backend, n, d, args.data)] + [r]
                    if "error" in r:
                        print(f"n={n:>8} d={d} {args.data} {backend:12s} {r['error']}", flush=True)
                    else:
                        base = next(x for x in rows if key(x) == ("numpy", n, d, args.data))
                        r["qps_batch1_vs_numpy"] = round(r["qps_batch1"] / base["qps_batch1"], 2)
                        r["qps_batch256_vs_numpy"] = round(r["qps_batch256"] / base["qps_batch256"], 2)
                        print(f"n={n:>8} d={d} {args.data} {backend:18s} build {r['build_s']:8.2f} s  "
                              f"{r['ms_per_query_batch1']:7.2f} ms/query ({r['qps_batch1_vs_numpy']}x numpy qps)  "
                              f"qps@256 {r['qps_batch256']:9.1f} ({r['qps_batch256_vs_numpy']}x)  "
                              f"recall@10 {r['recall_at_10']:.4f}  mem +{r['peak_rss_above_data_gib']} GiB",
                              flush=True)
                    write(out, rows)  # after every measurement: a long run keeps what it measured


def key(row: dict) -> tuple:
    return row["backend"], row["n"], row["d"], row.get("data", "random")


def write(out: Path, rows: list[dict]) -> None:
    from faceforge.core.files import atomic_write_json
    rows = sorted(rows, key=lambda x: (x.get("data", "random") != "random", x["n"], x["d"],
                                       BACKENDS.index(x["backend"])))
    atomic_write_json(out, {
        "setup": {"k": K, "queries": N_QUERIES, "batch": BATCH, "single_query_budget_s": SINGLE_BUDGET_S,
                  "data": {"random": "unit vectors (normal, normalised), queries from another seed",
                           "clustered": "identities of 1-50 images (geometric, mean 10) at mean cosine 0.7 "
                                        "to random centres; queries are new images of enrolled identities"},
                  "galleries": "every backend but numpy through faceforge.search.open_gallery with its defaults: "
                               "faiss:<folder> (flat or hnsw, FaissGallery's M 32, efConstruction 200, efSearch "
                               "128), <folder>.db (Milvus Lite, FLAT / inner product; milvus-lite searches its "
                               "in-process copy, milvus-lite-engine asks Milvus Lite itself)"},
        "machine": machine(), "results": rows})


def rss_of(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def run_child(backend: str, n: int, d: int, kind: str, truth: Path, max_rss_gib: float) -> dict:
    """One backend in its own process, stopped if its resident memory passes the cap (the
    machine has 24 GiB; a swapping or killed machine measures nothing)."""
    proc = subprocess.Popen([sys.executable, __file__, "--child", backend, str(n), str(d), kind, "--truth", str(truth)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, rss_of(proc.pid))
        if peak > max_rss_gib:
            proc.kill()
            proc.wait()
            return {"backend": backend, "n": n, "d": d, "data": kind,
                    "error": f"stopped: resident memory passed {max_rss_gib:g} GiB while building or searching"}
        time.sleep(0.2)
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        print(stderr[-3000:], file=sys.stderr)
        return {"backend": backend, "n": n, "d": d, "data": kind, "error": (stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
