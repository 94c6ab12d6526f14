"""Re-id evaluation of a body model on person folders (`faceforge eval reid`): the test
people's cross-camera ranking (one camera's images query the others'), pair accuracy at a
threshold chosen on the training people, optional k-reciprocal re-ranking, the CMC curve
and a retrieval sheet."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from faceforge.core.errors import FaceForgeError
from faceforge.core.files import atomic_write_json
from faceforge.core.progress import progress
from faceforge.evaluate.reid import (
    camera_split,
    cosine_distance,
    cross_camera_pairs,
    k_reciprocal_rerank,
    pair_accuracy,
    pair_similarities,
    rank_cross_camera,
)
from faceforge.io.bodies import BodyFolder, scan_body_folder
from faceforge.io.images import load_image
from faceforge.vision.body import letterbox

SHEET_QUERIES, SHEET_MATCHES = 6, 10


def body_crops(embedder, files: list[Path]) -> np.ndarray:
    h, w = embedder.spec.shape
    return np.stack([letterbox(load_image(f), h, w) for f in files])


def embed_bodies(embedder, folder: BodyFolder, show_progress: bool = False) -> np.ndarray:
    """Unit embeddings of every usable image of the folder, in its order."""
    if embedder.spec.template != "body":
        raise FaceForgeError(f"{embedder.name} embeds {embedder.spec.template} face crops; re-id needs a model "
                             "trained on body images (task: reid)")
    step = embedder.batch_size
    chunks = [embedder.embed_crops(body_crops(embedder, folder.files[i:i + step]))
              for i in progress(range(0, len(folder.files), step), "embedding bodies", enabled=show_progress)]
    return np.concatenate(chunks)


def evaluate_reid(embedder, test_root: str | Path, train_root: str | Path | None = None, camera: str = "cuhk03",
                  query_camera: int | None = None, rerank: bool = False, out_dir: str | Path | None = None,
                  show_progress: bool = False) -> dict:
    """Rank-1/5/10, mAP and the CMC of the test people (and re-ranked, if asked), queries
    from `query_camera` (default: the lowest camera id); pair accuracy when the training
    people are given (the threshold is chosen on them; the card's threshold is reported too)."""
    test = scan_body_folder(test_root, camera)
    if query_camera is None:
        query_camera = int(test.cameras.min())
    t0 = time.perf_counter()
    emb = embed_bodies(embedder, test, show_progress)
    ms = 1000 * (time.perf_counter() - t0) / len(test.files)
    q, g = camera_split(test.cameras, query_camera)
    people = np.array(test.people)
    dist = cosine_distance(emb[q], emb[g])
    ranking = rank_cross_camera(dist, people[q], people[g], test.cameras[q], test.cameras[g], max_rank=20)
    res = {"model": embedder.name, "test_root": str(test_root), "people": len(set(test.people)),
           "images": len(test.files), "skipped": test.skipped,
           "protocol": f"queries: camera {query_camera}; gallery: the other cameras; same person in the same camera "
                       "never counts", "ranking": ranking.summary(), "cmc": ranking.cmc.round(5).tolist(),
           "ms_per_image": round(ms, 2)}
    curves = {embedder.name: ranking.cmc}
    if rerank:
        reranked = rank_cross_camera(k_reciprocal_rerank(emb[q], emb[g]), people[q], people[g], test.cameras[q],
                                     test.cameras[g], max_rank=20)
        res["reranked"] = {**reranked.summary(), "cmc": reranked.cmc.round(5).tolist(),
                           "method": "k-reciprocal (k1 20, k2 6, λ 0.3)"}
        curves[f"{embedder.name}, re-ranked"] = reranked.cmc
    if train_root is not None:
        train = scan_body_folder(train_root, camera)
        res["pair_accuracy"] = pair_accuracy(embed_bodies(embedder, train, show_progress), train.people,
                                             train.cameras, emb, test.people, test.cameras)
        if embedder.threshold is not None:  # the card's threshold, chosen on people held out of training
            a, b, same = cross_camera_pairs(test.people, test.cameras)
            res["pair_accuracy"]["card_threshold"] = float(embedder.threshold)
            res["pair_accuracy"]["accuracy_at_card_threshold"] = float(
                np.mean((pair_similarities(emb, a, b) >= embedder.threshold) == same))
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        from faceforge.evaluate.plots import plot_cmc, plot_retrieval
        plot_cmc(curves, out_dir / "cmc.png", f"{Path(test_root).name}: cross-camera CMC")
        plot_retrieval(_sheet(embedder, test, q, g, dist), out_dir / "retrieval.png",
                       f"{embedder.name}: queries (camera {query_camera}) and their top {SHEET_MATCHES}")
        res["plots"] = {"cmc": str(out_dir / "cmc.png"), "retrieval": str(out_dir / "retrieval.png")}
        atomic_write_json(out_dir / "metrics.json", res)
    return res


def _sheet(embedder, folder: BodyFolder, q: np.ndarray, g: np.ndarray, dist: np.ndarray) -> list:
    """Evenly spaced queries with their top matches (same-person same-camera images left out,
    as the ranking does)."""
    rows = []
    for i in np.linspace(0, len(q) - 1, min(SHEET_QUERIES, len(q))).round().astype(int):
        person, cam = folder.people[q[i]], folder.cameras[q[i]]
        order = [j for j in np.argsort(dist[i], kind="stable")
                 if not (folder.people[g[j]] == person and folder.cameras[g[j]] == cam)][:SHEET_MATCHES]
        crops = body_crops(embedder, [folder.files[q[i]], *(folder.files[g[j]] for j in order)])
        rows.append((crops[0], [(c, folder.people[g[j]] == person) for c, j in zip(crops[1:], order)]))
    return rows
