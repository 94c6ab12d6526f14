"""LFW identification through a gallery (the reference's table): one image of each of the 5,749
people enrolled (the first by file name), every other image (7,484) a probe; all probes are
mated. Rank-1, and for the top-1 and top-3 decisions the precision and recall at the lowest
threshold whose precision reaches 99.9 % (and 99.5, 99, 98 %), for sface and dlib-r29. With one
image per person the top-3 vote cannot differ from top-1, so a second protocol enrols the first
three images of every person and probes the rest.

Enrolment and search go through the Milvus Lite gallery (the embedded default) and FAISS flat;
both are checked to decide exactly as the in-memory numpy implementation
(faceforge.evaluate.identification.topk_decisions), which is the baseline for the timings.
YuNet detects once (LFW's no-face policy), embeddings are cached in ~/.cache/faceforge/gallery.

    python bench/gallery_lfw.py           # writes bench/results/gallery_lfw.json
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from faceforge.core.data import lfw_dir
from faceforge.core.files import atomic_write_json
from faceforge.evaluate.identification import TopKDecisions, topk_decisions
from faceforge.evaluate.lfw import detect_lfw_faces, embed_faces
from faceforge.models.embedders import create_embedder
from faceforge.search.decision import decide
from faceforge.search.gallery import Records, content_key, open_gallery
from faceforge.vision.detectors import create_detector
from common import machine  # bench/common.py

RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path.home() / ".cache" / "faceforge" / "gallery"
MODELS = ("sface", "dlib-r29")
TARGETS = (0.999, 0.995, 0.99, 0.98)
PROTOCOLS = (1, 3)  # gallery images per person


def embeddings(names: list[str], show: bool) -> dict[str, np.ndarray]:
    CACHE.mkdir(parents=True, exist_ok=True)
    cached = {m: CACHE / f"lfw_{m}.npy" for m in MODELS}
    if all(p.exists() for p in cached.values()):
        return {m: np.load(p) for m, p in cached.items()}
    images, faces, missing = detect_lfw_faces(lfw_dir(), names, create_detector("yunet"), show)
    print(f"detected {len(names)} images, {len(missing)} without a face (median landmarks)")
    out = {}
    for m in MODELS:
        out[m] = embed_faces(create_embedder(m, device="cpu"), images, faces, names, 64, show)
        np.save(cached[m], out[m])
    return out


def table(dec: TopKDecisions, rank1: float | None = None) -> dict:
    row = {"k": dec.k, "decided": int(np.isfinite(dec.score).sum()), "correct_if_all_accepted": float(dec.correct.mean())}
    for t in TARGETS:
        row[f"at_precision_{t:g}"] = dec.threshold_for_precision(t)
    return row


def top_errors(dec: TopKDecisions, g_paths, g_ids, p_paths, n: int = 15) -> list[dict]:
    """The wrong decisions a threshold cannot remove: those with the highest scores."""
    wrong = np.flatnonzero(~dec.correct & np.isfinite(dec.score))
    wrong = wrong[np.argsort(-dec.score[wrong])][:n]
    gallery_of = dict(zip(g_ids, g_paths))
    return [{"probe": str(p_paths[i]), "decided": str(dec.identity[i]), "gallery_image": str(gallery_of[dec.identity[i]]),
             "score": round(float(dec.score[i]), 4)} for i in wrong]


def run_backend(uri: str, model: str, g_vecs, g_ids, g_paths, probes, p_ids) -> tuple[dict, dict]:
    with open_gallery(uri) as g:
        t0 = time.perf_counter()
        rec = Records(list(g_ids), list(g_paths),
                      [content_key(p, v.tobytes()) for p, v in zip(g_paths, g_vecs)],
                      [0] * len(g_ids), g_vecs)
        g.add(rec, model)
        enrol_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        hits = g.search(probes, 3)
        search_s = time.perf_counter() - t0
    out = {}
    for k in (1, 3):
        ds = [decide(h, k, None) for h in hits]
        ident = [d.candidate for d in ds]
        score = np.array([np.nan if d.score is None else d.score for d in ds])
        out[k] = TopKDecisions(k, ident, score, np.array([i == t for i, t in zip(ident, p_ids)]))
    return out, {"enrol_s": round(enrol_s, 3), "search_s": round(search_s, 3),
                 "queries_per_s": round(len(probes) / search_s, 1)}


def main() -> None:
    show = sys.stderr.isatty()
    root = lfw_dir()
    names = sorted(str(p.relative_to(root / "images")) for p in (root / "images").glob("*/*.jpg"))
    ids = np.array([n.split("/")[0] for n in names])
    vecs = embeddings(names, show)
    # names are sorted: an image's rank within its person is its position since the person's first
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    rank = np.arange(len(ids)) - np.repeat(starts, np.diff(np.r_[starts, len(ids)]))
    results = []
    for per_person in PROTOCOLS:
        in_gallery = rank < per_person
        probed = ~in_gallery
        for model in MODELS:
            v = vecs[model] / np.linalg.norm(vecs[model], axis=1, keepdims=True)
            g_vecs, g_ids, probes, p_ids = v[in_gallery], ids[in_gallery], v[probed], ids[probed]
            g_paths, p_paths = np.array(names)[in_gallery], np.array(names)[probed]
            t0 = time.perf_counter()
            ref = {k: topk_decisions(g_vecs, g_ids, probes, p_ids, k) for k in (1, 3)}
            numpy_s = time.perf_counter() - t0
            rows = {"model": model, "gallery_images_per_person": per_person, "gallery": int(in_gallery.sum()),
                    "gallery_identities": int(len(set(g_ids))), "probes": int(probed.sum()),
                    "probe_identities": int(len(set(p_ids))), "rank1": float(ref[1].correct.mean()),
                    "numpy_s": round(numpy_s, 3), "backends": {}}
            for backend in ("milvus-lite", "faiss-flat"):
                with tempfile.TemporaryDirectory() as d:
                    uri = f"{d}/g.db" if backend == "milvus-lite" else f"faiss:{d}/g"
                    dec, timing = run_backend(uri, model, g_vecs, g_ids, g_paths, probes, p_ids)
                same = all(dec[k].identity == ref[k].identity and np.allclose(dec[k].score, ref[k].score, atol=1e-5,
                                                                              equal_nan=True) for k in (1, 3))
                rows["backends"][backend] = {**timing, "decisions_equal_numpy": bool(same),
                                             "search_vs_numpy": round(timing["search_s"] / numpy_s, 2)}
                if backend == "milvus-lite":
                    rows["top1"], rows["top3"] = table(dec[1]), table(dec[3])
                    rows["top1_highest_scoring_errors"] = top_errors(dec[1], g_paths, g_ids, p_paths)
            results.append(rows)
            t1, t3 = rows["top1"]["at_precision_0.99"], rows["top3"]["at_precision_0.99"]
            print(f"{model}, {per_person} per person: rank-1 {100 * rows['rank1']:.2f} %; at precision ≥ 99 %: "
                  f"top-1 recall {100 * t1['recall']:.2f} % (thr {t1['threshold']:.4f}), top-3 recall "
                  f"{100 * t3['recall']:.2f} % (thr {t3['threshold']:.4f}); Milvus Lite search "
                  f"{rows['backends']['milvus-lite']['search_s']} s, FAISS {rows['backends']['faiss-flat']['search_s']}"
                  f" s, numpy {numpy_s:.2f} s; decisions equal numpy: "
                  f"{[b['decisions_equal_numpy'] for b in rows['backends'].values()]}")
    atomic_write_json(RESULTS / "gallery_lfw.json", {
        "protocol": "LFW: gallery = the first N images (by name) of every person (N = 1: 5,749 images, one per "
                    "person; N = 3: people with fewer images are enrolled whole and never probed), probes = every "
                    "other image; YuNet central face, median landmarks where none; top-K majority decision",
        "machine": machine(), "results": results})


if __name__ == "__main__":
    main()
