"""Embeddings Parquet: one row per face, written so that a killed run loses nothing.

While a run is in progress, rows go to `<out>.parts/part-NNNNN.parquet`, each written
atomically every `chunk_size` rows, and unusable files to `<out>.skips.jsonl` (one line
each, flushed). A rerun reads both and skips what is done; `close()` merges the parts into
`<out>` atomically and removes the parts folder.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from faceforge.core.errors import FaceForgeError
from faceforge.core.files import atomic_write

SCHEMA = pa.schema([
    ("path", pa.string()),
    ("identity", pa.string()),
    ("face_index", pa.int32()),
    ("box", pa.list_(pa.float32(), 4)),
    ("landmarks", pa.list_(pa.float32(), 10)),
    ("det_score", pa.float32()),
    ("detector", pa.string()),
    ("model", pa.string()),
    ("embedding", pa.list_(pa.float32())),
])
QUALITY_FIELD = pa.field("quality", pa.int32())  # 0..100, faceforge.quality


def _write_table(path: Path, table: pa.Table) -> None:
    with atomic_write(path, "wb") as fh:
        pq.write_table(table, fh)


def read_embeddings(path: str | Path) -> pa.Table:
    """Read an embeddings Parquet (raises FaceForgeError naming the file if unreadable)."""
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise FaceForgeError(f"cannot read embeddings Parquet: {exc}", path) from None
    missing = {"path", "embedding"} - set(table.column_names)
    if missing:
        raise FaceForgeError(f"not an embeddings file: missing columns {sorted(missing)}", path)
    return table


def embedding_matrix(table: pa.Table) -> np.ndarray:
    """The `embedding` column as an N×D float32 array."""
    col = table.column("embedding").combine_chunks()
    if len(col) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    return flat.reshape(len(col), -1)


class EmbeddingWriter:
    """Resumable writer; use as a context manager or call close()."""

    def __init__(self, out: str | Path, chunk_size: int = 256, quality: bool = False) -> None:
        self.out = Path(out)
        self.schema = SCHEMA.append(QUALITY_FIELD) if quality else SCHEMA
        self.parts = self.out.with_name(self.out.name + ".parts")
        self.skips_path = self.out.with_name(self.out.name + ".skips.jsonl")
        self.chunk_size = int(chunk_size)
        self._rows: list[dict] = []
        self._done: set[str] = set()
        self._skipped: set[str] = set()
        self._n_parts = 0
        if self.out.exists():
            self._done.update(read_embeddings(self.out).column("path").to_pylist())
        if self.parts.is_dir():
            for part in sorted(self.parts.glob("part-*.parquet")):
                self._done.update(pq.read_table(part, columns=["path"]).column("path").to_pylist())
                self._n_parts += 1
        if self.skips_path.exists():
            for line in self.skips_path.read_text().splitlines():
                try:
                    self._skipped.add(json.loads(line)["path"])
                except (ValueError, KeyError):
                    continue  # a line cut short by a kill
        self._skip_fh = None

    @property
    def done(self) -> set[str]:
        """Paths already embedded or recorded as skipped."""
        return self._done | self._skipped

    def add(self, row: dict) -> None:
        self._rows.append(row)
        if len(self._rows) >= self.chunk_size:
            self.flush()

    def add_skip(self, record: dict) -> None:
        if self._skip_fh is None:
            self._skip_fh = open(self.skips_path, "a", encoding="utf-8")
        self._skip_fh.write(json.dumps(record) + "\n")
        self._skip_fh.flush()
        os.fsync(self._skip_fh.fileno())
        self._skipped.add(record["path"])

    def flush(self) -> None:
        # A file's faces all land in the same part: keep rows of the last path together.
        if not self._rows:
            return
        self.parts.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(self._rows, schema=self.schema)
        _write_table(self.parts / f"part-{self._n_parts:05d}.parquet", table)
        self._n_parts += 1
        self._done.update(r["path"] for r in self._rows)
        self._rows.clear()

    def close(self) -> pa.Table:
        """Flush, merge existing output and parts into `out`, return the merged table."""
        self.flush()
        if self._skip_fh is not None:
            self._skip_fh.close()
        tables = [read_embeddings(self.out)] if self.out.exists() else []
        if self.parts.is_dir():
            tables += [pq.read_table(p) for p in sorted(self.parts.glob("part-*.parquet"))]
        merged = pa.concat_tables([t.cast(self.schema) for t in tables]) if tables else self.schema.empty_table()
        _write_table(self.out, merged)
        if self.parts.is_dir():
            shutil.rmtree(self.parts)
        return merged

    def __enter__(self) -> "EmbeddingWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # On an error or Ctrl-C keep the finished parts for the next run; merge only on success.
        if exc_type is None:
            self.close()
        else:
            self.flush()
            if self._skip_fh is not None:
                self._skip_fh.close()


def face_keys(table: pa.Table) -> list[str]:
    """One name per row: the image path, `path#k` for the k-th extra face of a file."""
    paths = table.column("path").to_pylist()
    idx = table.column("face_index").to_pylist() if "face_index" in table.column_names else [0] * len(paths)
    return [p if k == 0 else f"{p}#{k}" for p, k in zip(paths, idx)]


def iter_rows(table: pa.Table, columns: Iterable[str]) -> Iterable[tuple]:
    cols = [table.column(c).to_pylist() for c in columns]
    return zip(*cols)
