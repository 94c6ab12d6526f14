"""What `faceforge quality train|score|filter` does, as functions: collect BatchNorm features
of a labelled folder and fit the estimator; score a folder or an embeddings Parquet; drop the
lowest-quality faces into new lists; draw the worst faces on a contact sheet. Inputs are
never modified: every result is a new file.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa

from faceforge.core.errors import FaceForgeError
from faceforge.core.files import atomic_write, atomic_write_json, atomic_write_text
from faceforge.core.progress import progress
from faceforge.io.embeddings import QUALITY_FIELD, _write_table, face_keys, read_embeddings
from faceforge.io.images import list_images, load_image
from faceforge.pipeline import FacePipeline, FaceRecord, Select, Skip, embed_folder
from faceforge.quality.baselines import (BASELINES, embedding_norm, face_size, laplacian_sharpness,
                                         pose_frontalness, serfiq)
from faceforge.quality.estimator import QualityEstimator, require_catboost, train_estimator
from faceforge.quality.labels import leave_one_out_labels
from faceforge.quality.scorer import QualityScorer
from faceforge.vision.face import Face


@dataclass
class Collected:
    """Per face: where it came from, its embedding and its BatchNorm-input features."""

    paths: list[str]
    identities: np.ndarray
    embeddings: np.ndarray   # L2-normalised
    features: np.ndarray
    layer_names: list[str]
    fingerprint: str         # of the network the features came from
    skipped: list[Skip]


class _FeatureCollector:
    """A pipeline scorer that keeps the features instead of scoring them."""

    def __init__(self, scorer: QualityScorer) -> None:
        self.scorer, self.features = scorer, []

    def embed_and_score(self, crops: np.ndarray):
        raw, feats = self.scorer.features(crops)
        self.features.append(feats)
        return self.scorer.embedder.embed_crops(crops, raw=raw), [None] * len(crops)


def collect_folder(pipeline: FacePipeline, folder: str | Path, kind: str = "var",
                   show_progress: bool | None = None) -> Collected:
    """Detect the most central face of every image of root/<identity>/<image> and collect."""
    folder = Path(folder)
    files = list_images(folder)
    collector = _FeatureCollector(QualityScorer(pipeline.embedder, kind=kind))
    collecting = dataclasses.replace(pipeline, scorer=collector)
    recs: list[FaceRecord] = []
    skips: list[Skip] = []
    for r in progress(collecting.process_files(files, select="central"), "quality features",
                      total=len(files), enabled=show_progress):
        (recs if isinstance(r, FaceRecord) else skips).append(r)
    if not recs:
        raise FaceForgeError("no usable face in any image", folder)
    ids = np.array([Path(r.path).relative_to(folder).parts[0] for r in recs])
    return Collected([r.path for r in recs], ids, np.stack([r.embedding for r in recs]),
                     np.concatenate(collector.features), collector.scorer.layer_names,
                     collector.scorer.fingerprint, skips)


def train_from_folder(pipeline: FacePipeline, folder: str | Path, kind: str = "var",
                      show_progress: bool | None = None, **train_kw) -> tuple[QualityEstimator, Collected]:
    """Labels: leave-one-out identity centres (no trained head needed; faceforge.quality.labels)."""
    require_catboost()  # before the folder is embedded, not after
    data = collect_folder(pipeline, folder, kind, show_progress)
    labels = leave_one_out_labels(data.embeddings, data.identities)
    est = train_estimator(data.features, labels, data.identities, backbone=pipeline.embedder.name,
                          layer_names=data.layer_names, kind=kind, fingerprint=data.fingerprint, **train_kw)
    return est, data


def _check_scoring(estimator: QualityEstimator | None, baselines: Sequence[str]) -> None:
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise FaceForgeError(f"unknown quality baselines {unknown}; known: {', '.join(BASELINES)}")
    if estimator is None and not baselines:
        raise FaceForgeError("nothing to compute: give an estimator and/or baselines")


def score_parquet(path: str | Path, output: str | Path, embedder, estimator: QualityEstimator | None = None,
                  baselines: Sequence[str] = (), batch_size: int = 64, show_progress: bool | None = None) -> pa.Table:
    """Re-read every face of an embeddings Parquet from its image and stored landmarks and
    write a copy to `output` with `quality` (the estimator's 0..100 score) and `quality_raw`
    (its raw output in [0, 1], which curation's graph rule compares with cosines) columns,
    replaced if present, and/or one `quality_<baseline>` column per baseline (quality.baselines)."""
    path, output = Path(path), Path(output)
    if output.resolve() == path.resolve():
        raise FaceForgeError("the output would overwrite the input; choose another file", output)
    _check_scoring(estimator, baselines)
    table = read_embeddings(path)
    missing = {"landmarks", "det_score"} - set(table.column_names)
    if missing:
        raise FaceForgeError(f"no {sorted(missing)} column: cannot re-align the faces", path)
    rows = table.select(["path", "landmarks"]).to_pylist()
    landmarks = np.asarray([r["landmarks"] for r in rows], np.float32).reshape(-1, 5, 2)
    scorer = QualityScorer(embedder, estimator) if estimator is not None or "serfiq" in baselines else None
    cols: dict[str, list[np.ndarray]] = {b: [] for b in baselines if b in ("blur", "embedding_norm", "serfiq")}
    quality_raw: list[np.ndarray] = []
    cache: tuple[str, np.ndarray] | None = None
    for start in progress(range(0, len(rows), batch_size), "quality", enabled=show_progress):
        crops = []
        for r, lm in zip(rows[start:start + batch_size], landmarks[start:start + batch_size]):
            if cache is None or cache[0] != r["path"]:
                cache = (r["path"], load_image(r["path"]))  # faces of one file are adjacent
            crops.append(embedder.align(cache[1], Face(np.zeros(4, np.float32), 1.0, lm)))
        crops = np.stack(crops)
        if scorer is not None:
            if "serfiq" in cols:
                raw, feats, lin_in, layer = scorer.features(crops, embedding_layer_input=True)
                cols["serfiq"].append(serfiq(layer, lin_in))
            else:
                raw, feats = scorer.features(crops)
            if estimator is not None:
                quality_raw.append(estimator.predict(feats))
        else:
            raw = embedder.embed_raw(crops) if "embedding_norm" in cols else None
        if "embedding_norm" in cols:
            cols["embedding_norm"].append(embedding_norm(raw))
        if "blur" in cols:
            cols["blur"].append(laplacian_sharpness(crops))
    values = {f"quality_{b}": np.concatenate(v) for b, v in cols.items()}
    if "detector_score" in baselines:
        values["quality_detector_score"] = table.column("det_score").to_numpy(zero_copy_only=False).astype(np.float64)
    if "face_size" in baselines:
        values["quality_face_size"] = face_size(landmarks)
    if "pose" in baselines:
        values["quality_pose"] = pose_frontalness(landmarks)
    if estimator is not None:
        values["quality_raw"] = np.concatenate(quality_raw)
    new = {name: pa.array(v, pa.float64()) for name, v in values.items()}
    if estimator is not None:
        new["quality"] = pa.array(estimator.map_score(values["quality_raw"]), pa.int32())
    table = table.drop_columns([c for c in new if c in table.column_names])
    for name, arr in new.items():
        table = table.append_column(QUALITY_FIELD if name == "quality" else pa.field(name, pa.float64()), arr)
    _write_table(output, table)
    return table


def score_source(source: str | Path, output: str | Path, pipeline: FacePipeline,
                 estimator: QualityEstimator | None = None, baselines: Sequence[str] = (), select: Select = "all",
                 sheet: str | Path | None = None, overwrite: bool = False) -> dict:
    """score_parquet for an embeddings Parquet; a folder of images is embedded with the
    estimator scoring each face on the way, then (for baselines) scored again from our own
    file, which the result replaces. The summary names the column it describes: `quality`
    with an estimator, else the first baseline's; `sheet` draws its lowest faces."""
    source, output = Path(source), Path(output)
    _check_scoring(estimator, baselines)
    if source.is_dir():
        scorer = QualityScorer(pipeline.embedder, estimator) if estimator else None
        first = output.with_name(output.stem + ".partial.parquet") if baselines else output
        embed_folder(dataclasses.replace(pipeline, scorer=scorer), source, first, select, overwrite=overwrite)
        if baselines:  # a second pass over our own file, then swap it in
            score_parquet(first, output, pipeline.embedder, None, baselines, pipeline.batch_size)
            first.unlink()
    else:
        score_parquet(source, output, pipeline.embedder, estimator, baselines, pipeline.batch_size)
    column = "quality" if estimator else f"quality_{baselines[0]}"
    q = np.asarray(read_embeddings(output).column(column).to_numpy(zero_copy_only=False), dtype=float)
    if sheet:
        contact_sheet(output, sheet, column=column)
    return {"output": str(output), "faces": len(q), "column": column,
            "quality": {"min": float(q.min()), "median": float(np.median(q)), "max": float(q.max())} if len(q) else {},
            "sheet": str(sheet) if sheet else None}


def quality_cut(quality: np.ndarray, drop_percent: float | None = None, min_score: float | None = None) -> float:
    """Dropping the lowest p %: cut = sorted(q)[⌊N·p/100⌋], keep q ≥ cut (ties at the cut are kept)."""
    q = np.sort(np.asarray(quality, dtype=np.float64))
    if (drop_percent is None) == (min_score is None):
        raise FaceForgeError("give exactly one of a percentage to drop or a minimum score")
    if min_score is not None:
        return float(min_score)
    if not 0 <= drop_percent < 100:
        raise FaceForgeError(f"drop percentage must be in [0, 100), got {drop_percent}")
    if len(q) == 0:
        raise FaceForgeError("no faces to filter")
    return float(q[int(np.floor(len(q) * drop_percent / 100))])


def filter_parquet(path: str | Path, out_dir: str | Path, drop_percent: float | None = None,
                   min_score: float | None = None, column: str = "quality") -> dict:
    """Write keep.txt / drop.txt (one `path` per line; `path#face_index` for extra faces of a
    file) and summary.json into out_dir. The Parquet and the images are only read."""
    table = read_embeddings(path)
    if column not in table.column_names:
        raise FaceForgeError(f"no {column!r} column: run `faceforge quality score` first", path)
    q = np.asarray(table.column(column).to_numpy(zero_copy_only=False), dtype=np.float64)
    cut = quality_cut(q, drop_percent, min_score)
    keep = q >= cut
    names = face_keys(table)
    out = Path(out_dir)
    atomic_write_text(out / "keep.txt", "".join(n + "\n" for n, k in zip(names, keep) if k))
    atomic_write_text(out / "drop.txt", "".join(n + "\n" for n, k in zip(names, keep) if not k))
    summary = {"input": str(path), "column": column, "faces": len(q), "cut": cut,
               "rule": "keep quality >= cut", "kept": int(keep.sum()), "dropped": int((~keep).sum()),
               "drop_percent_requested": drop_percent, "min_score": min_score,
               "keep_list": str(out / "keep.txt"), "drop_list": str(out / "drop.txt")}
    atomic_write_json(out / "summary.json", summary)
    return summary


def contact_sheet(path: str | Path, output: str | Path, count: int = 48, column: str = "quality",
                  tile: int = 112, columns: int = 8) -> Path:
    """PNG of the `count` lowest-quality faces (box crops, score and file name under each)."""
    import cv2
    table = read_embeddings(path)
    if column not in table.column_names:
        raise FaceForgeError(f"no {column!r} column to sort by", path)
    q = np.asarray(table.column(column).to_numpy(zero_copy_only=False), dtype=np.float64)
    order = np.argsort(q, kind="stable")[:count]
    paths, boxes = table.column("path").to_pylist(), table.column("box").to_pylist()
    rows = max(1, -(-len(order) // columns))
    label_h = 28
    sheet = np.full((rows * (tile + label_h), columns * tile, 3), 255, np.uint8)
    for k, i in enumerate(order):
        img = load_image(paths[i])
        x1, y1, x2, y2 = (int(round(v)) for v in boxes[i])
        h, w = img.shape[:2]
        x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, max(x2, x1 + 1)), min(h, max(y2, y1 + 1))
        crop = cv2.resize(img[y1:y2, x1:x2], (tile, tile), interpolation=cv2.INTER_AREA)
        r, c = divmod(k, columns)
        y0 = r * (tile + label_h)
        sheet[y0:y0 + tile, c * tile:(c + 1) * tile] = crop
        cv2.putText(sheet, f"{q[i]:g}", (c * tile + 3, y0 + tile + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (200, 0, 0), 1)
        cv2.putText(sheet, Path(paths[i]).stem[:18], (c * tile + 3, y0 + tile + 24), cv2.FONT_HERSHEY_SIMPLEX,
                    0.3, (0, 0, 0), 1)
    ok, buf = cv2.imencode(".png", sheet[:, :, ::-1])
    if not ok:
        raise FaceForgeError("could not encode the contact sheet", output)
    with atomic_write(output, "wb") as fh:
        fh.write(buf.tobytes())
    return Path(output)
