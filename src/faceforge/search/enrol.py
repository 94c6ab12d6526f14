"""Enrolment: faces from image folders, files or an embeddings Parquet into a gallery, in
batches, resumable and deduplicated.

Every file is keyed by its path and a hash of its content, so a rerun after a kill (or over a
folder that grew) skips what is stored and embeds nothing twice; a file whose content changed
is enrolled again under a new key. Rows of a Parquet are keyed by path and the embedding's bytes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from faceforge.core.errors import FaceForgeError
from faceforge.core.files import content_hash, path_text
from faceforge.core.progress import progress
from faceforge.io.embeddings import embedding_matrix, face_keys, read_embeddings
from faceforge.io.images import list_images
from faceforge.pipeline import FacePipeline, FaceRecord, Select
from faceforge.search.gallery import NO_QUALITY, Gallery, Records, content_key, file_key


def folder_identity(root: Path) -> Callable[[Path], str]:
    """ROOT/<identity>/<image> → identity; an image directly in ROOT is named by its stem
    (as text: a folder name that is not UTF-8 keeps its other bytes as \\xNN)."""
    def identity(p: Path) -> str:
        rel = p.relative_to(root)
        return path_text(rel.parts[0] if len(rel.parts) > 1 else p.stem)
    return identity


def enrol_files(gallery: Gallery, pipeline: FacePipeline, files: Iterable[str | Path],
                identity_of: Callable[[Path], str], select: Select = "largest", batch_files: int = 64,
                show_progress: bool | None = None, on_batch: Callable[[int], None] | None = None) -> dict:
    """Embed and store the selected face of each file; files already stored are skipped
    before anything is decoded. Each batch is stored before the next one starts, so a
    killed run keeps every batch it acknowledged; `on_batch(files_done)` follows each."""
    files = {path_text(f): Path(f) for f in files}  # records name files by path_text
    model = pipeline.embedder.name
    gallery.check_model(model, gallery.dim)  # before any decoding; a new gallery accepts any
    added = already = faces = 0
    skipped: list[dict] = []
    names = list(files)
    batches = [names[a:a + batch_files] for a in range(0, len(names), batch_files)]
    for b, batch in enumerate(progress(batches, "enrolling", enabled=show_progress)):
        keys: dict[str, str] = {}
        for name in batch:
            try:
                keys[name] = file_key(name, content_hash(files[name]))
            except FaceForgeError as exc:
                skipped.append({"path": name, "kind": "unreadable", "reason": exc.reason})
        done = gallery.existing_file_keys(sorted(set(keys.values())))
        todo = [files[p] for p, k in keys.items() if k not in done]
        already += len(keys) - len(todo)
        recs: list[FaceRecord] = []
        for r in pipeline.process_files(todo, select=select):
            if isinstance(r, FaceRecord):
                recs.append(r)
            else:
                skipped.append(r.to_dict())
        if recs:
            records = Records(identity=[identity_of(files[r.path]) for r in recs], path=[r.path for r in recs],
                              file_key=[keys[r.path] for r in recs], face_index=[r.face_index for r in recs],
                              vectors=np.stack([r.embedding for r in recs]), quality=[r.quality for r in recs])
            faces += len(records)
            added += gallery.add(records, model)
        if on_batch is not None:
            on_batch(b * batch_files + len(batch))
    return {"gallery": gallery.uri, "model": model, "files": len(files), "already_enrolled": already,
            "faces_added": added, "faces_seen": faces, "skipped": skipped}


def enrol_folder(gallery: Gallery, pipeline: FacePipeline, folder: str | Path, select: Select = "largest",
                 batch_files: int = 64, show_progress: bool | None = None) -> dict:
    folder = Path(folder)
    files = list_images(folder)  # raises on a folder without images
    return enrol_files(gallery, pipeline, files, folder_identity(folder), select, batch_files, show_progress)


def enrol_parquet(gallery: Gallery, parquet: str | Path, batch_rows: int = 2000, min_quality: float | None = None,
                  quality_column: str = "quality", show_progress: bool | None = None,
                  on_batch: Callable[[int], None] | None = None) -> dict:
    """Store the rows of an embeddings Parquet (identity, path, model and embedding columns),
    `batch_rows` at a time, each batch acknowledged (`on_batch(rows_done)`) once stored;
    rows below `min_quality` are left out when a quality column is present."""
    table = read_embeddings(parquet)
    for col in ("identity", "model"):
        if col not in table.column_names:
            raise FaceForgeError(f"embeddings file has no '{col}' column", parquet)
    if len(table) == 0:
        raise FaceForgeError("embeddings file has no rows", parquet)
    models = set(table.column("model").to_pylist())
    if len(models) != 1:
        raise FaceForgeError(f"embeddings of several models in one file: {sorted(map(str, models))}", parquet)
    model = models.pop()
    ident = table.column("identity").to_pylist()
    empty = [i for i, v in enumerate(ident) if not v]
    if empty:
        raise FaceForgeError(f"{len(empty)} rows have no identity (first: row {empty[0]})", parquet)
    vectors = embedding_matrix(table)
    gallery.check_model(model, vectors.shape[1])
    paths = table.column("path").to_pylist()
    names = face_keys(table)  # path, or path#k for a file's k-th extra face
    fidx = table.column("face_index").to_pylist() if "face_index" in table.column_names else [0] * len(paths)
    has_q = quality_column in table.column_names
    quality = [NO_QUALITY if q is None else float(q) for q in table.column(quality_column).to_pylist()] if has_q \
        else [NO_QUALITY] * len(paths)
    rows = np.arange(len(paths))
    dropped = 0
    if min_quality is not None:
        if not has_q:
            raise FaceForgeError(f"--min-quality needs a '{quality_column}' column", parquet)
        keep = np.asarray(quality) >= min_quality
        dropped, rows = int((~keep).sum()), rows[keep]
    added = 0
    chunks = [rows[a:a + batch_rows] for a in range(0, len(rows), batch_rows)]
    for chunk in progress(chunks, "enrolling", enabled=show_progress):
        keys = [content_key(names[i], vectors[i].tobytes()) for i in chunk]
        recs = Records(identity=[ident[i] for i in chunk], path=[paths[i] for i in chunk], file_key=keys,
                       face_index=[int(fidx[i]) for i in chunk], vectors=vectors[chunk],
                       quality=[quality[i] for i in chunk])
        added += gallery.add(recs, model)
        if on_batch is not None:
            on_batch(int(chunk[-1]) + 1)
    return {"gallery": gallery.uri, "model": model, "rows": len(paths), "below_min_quality": dropped,
            "faces_added": added, "already_enrolled": len(rows) - added}
