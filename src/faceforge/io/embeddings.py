"""Embeddings Parquet: one row per face, written so that a killed run loses nothing.

While a run is in progress, rows go to `<out>.parts/part-NNNNN.parquet`, each written
atomically once about `chunk_size` rows of whole files are ready, and unusable files to
`<out>.skips.jsonl` (one line each, flushed). A rerun reads both and skips what is done;
`close()` merges the parts into `<out>` atomically and removes the parts folder.
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

from faceforge.core.errors import FaceForgeError, OutputExistsError
from faceforge.core.files import atomic_write, atomic_write_text, path_text, text_path

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


def read_skips(path: Path) -> dict[str, dict]:
    """The records of a skip log by path, the last record of a path winning; a line cut
    short by a kill is ignored. Empty when there is no log."""
    skips: dict[str, dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        try:
            rec = json.loads(line)
            skips[rec["path"]] = rec
        except (ValueError, KeyError, TypeError):
            continue
    return skips


def check_owner(table: pa.Table, out: Path, model: str | None, detector: str | None) -> None:
    """Refuse to add rows of `model` / `detector` to an output that holds another's."""
    for column, want in (("model", model), ("detector", detector)):
        if want is None or column not in table.column_names:
            continue
        found = sorted({str(v) for v in table.column(column).to_pylist()} - {want})
        if found:
            raise OutputExistsError(f"holds {column} {found[0]!r} rows; refusing to add {want!r} rows to it "
                                    "(use a new -o, or --overwrite to replace it)", out)


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


REPLACING = ".replaces-output"  # in the parts folder: this run replaces the output (--overwrite)


def file_state(path: str | Path) -> dict:
    """Size and modification time of a file (empty when it cannot be stat'ed): a skipped
    file whose state changed is tried again."""
    try:
        st = os.stat(text_path(path))
    except OSError:
        return {}
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


class EmbeddingWriter:
    """Resumable writer; use as a context manager or call close().

    Rows of one file must be added one after another. A part never ends inside a file: it is
    written when a new file begins and at least `chunk_size` rows of finished files wait, so
    every file in a part is complete and a killed run redoes only files it had not finished.

    Skips are kept with the file's size and modification time; a rerun tries a skipped file
    again when it was unreadable (permission denied, an I/O error) or has changed since.

    The output must be ours: if it (or an interrupted run's parts) holds another model's or
    another detector's rows, the writer refuses, unless `overwrite`. Overwriting replaces the
    output only when the new run closes: until then the old file stays, the parts folder is
    marked as replacing it, and a rerun of the interrupted command resumes the replacement.
    """

    def __init__(self, out: str | Path, chunk_size: int = 256, quality: bool = False, model: str | None = None,
                 detector: str | None = None, overwrite: bool = False) -> None:
        self.out = Path(out)
        self.schema = SCHEMA.append(QUALITY_FIELD) if quality else SCHEMA
        self.parts = self.out.with_name(self.out.name + ".parts")
        self.skips_path = self.out.with_name(self.out.name + ".skips.jsonl")
        self.chunk_size = int(chunk_size)
        self._rows: list[dict] = []
        self._done: set[str] = set()
        self._skips: dict[str, dict] = {}
        if self.out.is_dir():
            raise OutputExistsError("is a folder; the output must be a .parquet file path", self.out)
        marker = self.parts / REPLACING
        if overwrite and not marker.exists():  # a new replacement: the old run's work in progress goes
            shutil.rmtree(self.parts, ignore_errors=True)
            self.skips_path.unlink(missing_ok=True)
            self.parts.mkdir(parents=True)
            marker.touch()
        self.replacing = marker.exists()
        if self.out.exists() and not self.replacing:
            table = read_embeddings(self.out)
            self._check_ours(table, model, detector)
            self._done.update(table.column("path").to_pylist())
        merged = set(self._done)
        for part in sorted(self.parts.glob("part-*.parquet")) if self.parts.is_dir() else []:
            cols = [c for c in ("path", "model", "detector") if c in pq.read_schema(part).names]
            table = pq.read_table(part, columns=cols)
            paths = set(table.column("path").to_pylist())
            if merged and paths <= merged:  # merged into the output already (a kill during close)
                part.unlink()
                continue
            self._check_ours(table, model, detector)
            self._done.update(paths)
        numbers = [int(p.stem.split("-")[1]) for p in self.parts.glob("part-*.parquet")] if self.parts.is_dir() else []
        self._n_parts = max(numbers, default=-1) + 1  # the next part never replaces one
        self._skips.update(read_skips(self.skips_path))
        self._skip_fh = None

    def _check_ours(self, table: pa.Table, model: str | None, detector: str | None) -> None:
        check_owner(table, self.out, model, detector)

    def is_done(self, path: str | Path) -> bool:
        """Already embedded, or skipped for a reason that still holds."""
        name = path_text(path)
        if name in self._done:
            return True
        skip = self._skips.get(name)
        if skip is None or skip.get("kind") == "unreadable":
            return False
        return {k: skip[k] for k in ("size", "mtime_ns") if k in skip} == file_state(path)

    @property
    def embedded(self) -> set[str]:
        """Paths with rows written (in the output or in finished parts)."""
        return set(self._done)

    def add(self, row: dict) -> None:
        if row["path"] in self._done:
            raise FaceForgeError(f"rows of {row['path']} were already written: add a file's rows together")
        if self._rows and row["path"] != self._rows[-1]["path"] and len(self._rows) >= self.chunk_size:
            self.flush(complete=True)  # every buffered file is finished: a new one begins
        self._rows.append(row)

    def add_skip(self, record: dict) -> None:
        record = {**record, **file_state(record["path"])}
        if self._skip_fh is None:
            self._skip_fh = open(self.skips_path, "a", encoding="utf-8")
        self._skip_fh.write(json.dumps(record) + "\n")
        self._skip_fh.flush()
        os.fsync(self._skip_fh.fileno())
        self._skips[record["path"]] = record

    def flush(self, complete: bool = False) -> None:
        """Write the buffered rows as a part. Unless `complete`, the rows of the last file
        stay out: more of its faces may have been coming (an interrupted run redoes it)."""
        rows = self._rows
        if not complete:
            last = len(rows)
            while last > 0 and rows[last - 1]["path"] == rows[-1]["path"]:
                last -= 1
            rows = rows[:last]
        if not rows:
            return
        self.parts.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(rows, schema=self.schema)
        _write_table(self.parts / f"part-{self._n_parts:05d}.parquet", table)
        self._n_parts += 1
        self._done.update(r["path"] for r in rows)
        del self._rows[:len(rows)]

    def _close_skips(self) -> None:
        if self._skip_fh is not None:
            self._skip_fh.close()
            self._skip_fh = None

    def close(self) -> pa.Table:
        """Flush, merge existing output and parts into `out`, return the merged table. The
        skip log keeps one line per file still skipped."""
        self.flush(complete=True)
        self._close_skips()
        tables = [read_embeddings(self.out)] if self.out.exists() and not self.replacing else []
        if self.parts.is_dir():
            tables += [pq.read_table(p) for p in sorted(self.parts.glob("part-*.parquet"))]
        merged = pa.concat_tables([t.cast(self.schema) for t in tables]) if tables else self.schema.empty_table()
        _write_table(self.out, merged)
        if self.parts.is_dir():
            shutil.rmtree(self.parts)
        if self.skips_path.exists():
            still = [r for p, r in self._skips.items() if p not in self._done]
            atomic_write_text(self.skips_path, "".join(json.dumps(r) + "\n" for r in still))
        return merged

    def __enter__(self) -> "EmbeddingWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # On an error or Ctrl-C keep the finished files for the next run; merge only on success.
        if exc_type is None:
            self.close()
        else:
            self.flush()
            self._close_skips()


def face_keys(table: pa.Table) -> list[str]:
    """One name per row: the image path, `path#k` for the k-th extra face of a file."""
    paths = table.column("path").to_pylist()
    idx = table.column("face_index").to_pylist() if "face_index" in table.column_names else [0] * len(paths)
    return [p if k == 0 else f"{p}#{k}" for p, k in zip(paths, idx)]


def iter_rows(table: pa.Table, columns: Iterable[str]) -> Iterable[tuple]:
    cols = [table.column(c).to_pylist() for c in columns]
    return zip(*cols)


def shard_output(out: str | Path, rank: int, world: int) -> Path:
    """Where rank `rank` of `world` writes its part of `out` (an ordinary resumable output)."""
    out = Path(out)
    return out.with_name(f"{out.stem}.rank{rank}-of-{world}{out.suffix}")


def shard_done_marker(out: str | Path, rank: int, world: int) -> Path:
    """Written by a rank once its shard output is complete: the summary of its run."""
    shard = shard_output(out, rank, world)
    return shard.with_name(shard.name + ".done")


def merge_shards(out: str | Path, world: int, order: Iterable[str], replace: bool = False) -> pa.Table:
    """One output from the `world` finished shard outputs of `out` (and from `out` itself
    unless `replace`): rows in the order of the file list `order` (as one process writes
    them), a file's rows taken once even when an interrupted merge left them both in `out`
    and in a shard. The skip logs merge the same way. `out` is written atomically before
    any shard file is removed, so a kill at any point loses nothing: the rerun merges again."""
    out = Path(out)
    rank_of = {p: i for i, p in enumerate(order)}
    tables, seen = [], set()
    sources = ([out] if out.exists() and not replace else []) + [shard_output(out, r, world) for r in range(world)]
    for src in sources:
        if not src.exists():
            continue
        table = read_embeddings(src)
        paths = table.column("path").to_pylist()
        keep = [i for i, p in enumerate(paths) if p not in seen]
        seen.update(paths)
        tables.append(table.take(keep) if len(keep) < len(paths) else table)
    if not tables:
        raise FaceForgeError(f"no shard outputs of {world} ranks to merge", out)
    schema = tables[0].schema if all(t.schema.equals(tables[0].schema) for t in tables) else SCHEMA
    merged = pa.concat_tables([t.cast(schema) for t in tables])
    paths = merged.column("path").to_pylist()
    faces = merged.column("face_index").to_pylist()
    merged = merged.take(sorted(range(len(paths)), key=lambda i: (rank_of.get(paths[i], len(rank_of)), paths[i], faces[i])))
    skips: dict[str, dict] = {}
    for src in sources:
        skips.update(read_skips(src.with_name(src.name + ".skips.jsonl")))
    _write_table(out, merged)
    skip_log = out.with_name(out.name + ".skips.jsonl")
    still = [r for p, r in skips.items() if p not in seen]
    atomic_write_text(skip_log, "".join(json.dumps(r) + "\n" for r in still))
    for r in range(world):
        shard = shard_output(out, r, world)
        for leftover in (shard, shard.with_name(shard.name + ".skips.jsonl")):
            leftover.unlink(missing_ok=True)
        shard_done_marker(out, r, world).unlink(missing_ok=True)
    return merged
