"""What the evaluation commands read: embeddings Parquet files and pair lists."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from faceforge.core.errors import FaceForgeError
from faceforge.io.embeddings import embedding_matrix, read_embeddings


@dataclass
class EmbeddingSet:
    """One row per image (its first face), unit vectors, identities as strings."""
    source: Path
    paths: list[str]
    identities: np.ndarray
    vectors: np.ndarray
    table: pa.Table

    def column(self, name: str) -> np.ndarray:
        """A numeric per-image column (e.g. a quality score) as float64, checked."""
        if name not in self.table.column_names:
            raise FaceForgeError(f"no column {name!r} (columns: {', '.join(self.table.column_names)})", self.source)
        try:
            values = self.table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
        except (TypeError, ValueError, pa.ArrowException):
            raise FaceForgeError(f"column {name!r} is not numeric", self.source) from None
        if not np.isfinite(values).all():
            raise FaceForgeError(f"column {name!r} has {int((~np.isfinite(values)).sum())} missing or NaN values",
                                 self.source)
        return values


def load_embedding_set(path: str | Path) -> EmbeddingSet:
    """Read an embeddings Parquet for a protocol: images with several faces keep face 0
    (embed with --select central for one face per image); the identity is the `identity`
    column, or the image's folder name where that is empty."""
    path = Path(path)
    table = read_embeddings(path)
    if "face_index" in table.column_names:
        keep = np.asarray(table.column("face_index").to_numpy(zero_copy_only=False)) == 0
        table = table.filter(pa.array(keep))
    if table.num_rows == 0:
        raise FaceForgeError("no embeddings in the file", path)
    if "model" in table.column_names:
        models = set(table.column("model").to_pylist())
        if len(models) > 1:
            raise FaceForgeError(f"embeddings of several models mixed in one file: {sorted(models)}", path)
    paths = table.column("path").to_pylist()
    ids = table.column("identity").to_pylist() if "identity" in table.column_names else [""] * len(paths)
    ids = np.array([i or Path(p).parent.name for i, p in zip(ids, paths)])
    vecs = embedding_matrix(table)
    norms = np.linalg.norm(vecs, axis=1)
    if not np.isfinite(vecs).all() or (norms < 1e-6).any():
        raise FaceForgeError(f"{int((~np.isfinite(norms) | (norms < 1e-6)).sum())} embeddings are NaN or zero", path)
    return EmbeddingSet(path, paths, ids, (vecs / norms[:, None]).astype(np.float32), table)


def _index(paths: list[str]) -> dict[str, int]:
    """Every path under its full name and its last 1–3 components, where unambiguous."""
    idx: dict[str, int] = {}
    clash: set[str] = set()
    for i, p in enumerate(paths):
        parts = Path(p).parts
        for key in {p, *("/".join(parts[-k:]) for k in (1, 2, 3))}:
            if key in idx and idx[key] != i:
                clash.add(key)
            idx[key] = i
    return {k: v for k, v in idx.items() if k not in clash}


@dataclass
class PairIndex:
    a: np.ndarray
    b: np.ndarray
    same: np.ndarray
    missing: list[str]


def read_pair_file(path: str | Path) -> list[tuple[str, str, bool]]:
    """'a b label' lines (label 1 = same person; '#' starts a comment line) or LFW's
    official pairs.txt."""
    path = Path(path)
    try:
        lines = [(n, l.split()) for n, l in enumerate(path.read_text().splitlines(), 1)
                 if l.strip() and not l.startswith("#")]
    except OSError as exc:
        raise FaceForgeError(f"cannot read pair list: {exc}", path) from None
    if lines and len(lines[0][1]) == 2 and all(t.isdigit() for t in lines[0][1]):
        from faceforge.evaluate.lfw import read_pairs
        p = read_pairs(path)
        return list(zip(p.left, p.right, p.same.tolist()))
    pairs = []
    for n, parts in lines:
        if len(parts) != 3 or parts[2] not in ("0", "1"):
            raise FaceForgeError(f"line {n}: expected 'image_a image_b 0|1', got {' '.join(parts)!r}", path)
        pairs.append((parts[0], parts[1], parts[2] == "1"))
    if not pairs:
        raise FaceForgeError("pair list is empty", path)
    return pairs


def match_pairs(emb: EmbeddingSet, pairs: list[tuple[str, str, bool]]) -> PairIndex:
    """Rows of each pair's images; pairs naming an image without an embedding are listed
    in `missing` (the caller decides whether that is an error)."""
    idx = _index(emb.paths)
    a, b, same, missing = [], [], [], []
    for pa_, pb, s in pairs:
        ia, ib = idx.get(pa_), idx.get(pb)
        if ia is None or ib is None:
            missing += [p for p, i in ((pa_, ia), (pb, ib)) if i is None]
            continue
        a.append(ia), b.append(ib), same.append(s)
    return PairIndex(np.array(a, np.int64), np.array(b, np.int64), np.array(same, bool), sorted(set(missing)))
