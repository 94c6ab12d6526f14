"""FAISS backend: the gallery in this process's memory (flat, HNSW or IVF; on a GPU when FAISS
has one), persisted in a folder so that it survives restarts and kills:

    DIR/meta.json              model and dimension
    DIR/parts/part-NNNNNN.parquet   one per enrolment batch, each written atomically
    DIR/ops.jsonl              deletes and renames, one fsynced line each, applied in order
    DIR/LOCK                   held (flock) while a process has the gallery open

A batch is acknowledged once its part file is in place; the index is rebuilt from the parts
at open, and after deletes/renames before the next search.
"""
from __future__ import annotations

import fcntl
import json
import math
import os
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from faceforge.core.extras import require
from faceforge.core.files import atomic_write, atomic_write_json
from faceforge.io.embeddings import embedding_matrix
from faceforge.search.gallery import (EXPORT_SCHEMA, RECORD_FIELDS, Gallery, GalleryError, Hit, Records,
                                      register_backend)

INDEXES = ("flat", "hnsw", "ivf")
HNSW_M, HNSW_EF_SEARCH, HNSW_EF_CONSTRUCTION = 32, 128, 200
IVF_NPROBE = 16


def _faiss() -> ModuleType:
    return require("faiss", "search", "a FAISS gallery (faiss:DIR)")


def _gpu_count() -> int:
    return int(getattr(_faiss(), "get_num_gpus", lambda: 0)())


@register_backend("faiss")
class FaissGallery(Gallery):
    def __init__(self, folder: str | Path, index: str = "flat", device: str = "auto") -> None:
        _faiss()  # before any folder is made: a missing extra fails here, not at the first search
        if index not in INDEXES:
            raise GalleryError(f"unknown FAISS index '{index}' (choose from {list(INDEXES)})")
        if device.startswith("cuda") and _gpu_count() == 0:
            raise GalleryError(f"--device {device}: this FAISS build sees no GPU (faiss-cpu, or no device)")
        self.folder = Path(folder)
        self.uri = f"faiss:{self.folder}"
        self.index_kind, self.device = index, device
        if self.folder.exists() and not self.folder.is_dir():
            raise GalleryError("not a FAISS gallery folder", self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock_fh = open(self.folder / "LOCK", "a")
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_fh.close()
            self._lock_fh = None
            raise GalleryError("this gallery is open in another process", self.folder) from None
        self._meta_cache = self._read_meta()
        self._load()

    # -- storage ------------------------------------------------------------------------
    def _read_meta(self) -> dict | None:
        p = self.folder / "meta.json"
        if not p.exists():
            return None
        try:
            meta = json.loads(p.read_text())
            self.index_kind = meta.get("index", self.index_kind)  # an existing gallery keeps its own index
            return {"model": str(meta["model"]), "dim": int(meta["dim"])}
        except (ValueError, KeyError, TypeError) as exc:
            raise GalleryError(f"corrupt gallery metadata: {exc}", p) from None

    def _meta(self) -> dict | None:
        return self._meta_cache

    def _init(self, model: str, dim: int) -> None:
        atomic_write_json(self.folder / "meta.json", {"model": model, "dim": int(dim), "index": self.index_kind,
                                                      "format": 1})
        self._meta_cache = {"model": model, "dim": int(dim)}
        self._vectors = np.zeros((0, dim), np.float32)

    def _parts(self) -> list[Path]:
        return sorted((self.folder / "parts").glob("part-*.parquet"))

    def _ops(self) -> list[dict]:
        p = self.folder / "ops.jsonl"
        if not p.exists():
            return []
        ops = []
        for line in p.read_text().splitlines():
            try:
                ops.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a kill was never acknowledged
        return ops

    def _load(self) -> None:
        dim = self.dim or 0
        tables = []
        for part in self._parts():
            try:
                tables.append(pq.read_table(part))
            except (OSError, pa.ArrowException) as exc:
                raise GalleryError(f"corrupt gallery part: {exc}", part) from None
        table = pa.concat_tables(tables) if tables else EXPORT_SCHEMA.empty_table()
        self._cols = {f: table.column(f).to_pylist() for f in RECORD_FIELDS}
        part_of = np.repeat(np.arange(len(tables)), [len(t) for t in tables]) if tables else np.zeros(0, int)
        self._vectors = embedding_matrix(table) if len(table) else np.zeros((0, dim), np.float32)
        self._n_parts = len(tables)
        alive = np.ones(len(table), bool)
        ident = np.array(self._cols["identity"], dtype=object)
        for op in self._ops():  # an op applies to the parts written before it
            before = part_of < int(op["parts"])
            if op["op"] == "delete":
                alive &= ~(before & (ident == op["identity"]))
            elif op["op"] == "rename":
                ident[before & alive & (ident == op["old"])] = op["new"]
        self._cols["identity"] = ident.tolist()
        keep = np.flatnonzero(alive)
        if len(keep) < len(alive):
            self._cols = {f: [v[i] for i in keep] for f, v in self._cols.items()}
            self._vectors = self._vectors[keep]
        self._keys = set(self._cols["key"])
        self._index = None

    def _append_op(self, op: dict) -> None:
        with open(self.folder / "ops.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps({**op, "parts": self._n_parts}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _insert(self, records: Records) -> None:
        cols = records.columns(self.model)
        table = pa.Table.from_pydict({**cols, "embedding": list(records.vectors)}, schema=EXPORT_SCHEMA)
        path = self.folder / "parts" / f"part-{self._n_parts:06d}.parquet"
        with atomic_write(path, "wb") as fh:
            pq.write_table(table, fh)
        self._n_parts += 1
        for f, v in cols.items():
            self._cols[f].extend(v)
        start = len(self._vectors)
        self._vectors = np.vstack([self._vectors, records.vectors])
        self._keys.update(cols["key"])
        if self._index is not None and self.index_kind != "ivf":
            self._index.add(self._vectors[start:])
        else:
            self._index = None

    def existing_keys(self, keys: list[str]) -> set[str]:
        return {k for k in keys if k in self._keys}

    # -- index --------------------------------------------------------------------------
    def _build(self):
        faiss = _faiss()
        n, d = self._vectors.shape
        if self.index_kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            index.hnsw.efSearch = HNSW_EF_SEARCH
        elif self.index_kind == "ivf" and n >= 1000:
            nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
            index.train(self._vectors)
            index.nprobe = IVF_NPROBE
        else:  # flat, and IVF below 1,000 vectors (too few to train lists on)
            index = faiss.IndexFlatIP(d)
        if self.device != "cpu" and self.index_kind != "hnsw" and _gpu_count() > 0:  # auto or cuda
            index = faiss.index_cpu_to_all_gpus(index)
        index.add(self._vectors)
        return index

    def _search(self, vectors: np.ndarray, k: int, min_quality: float | None) -> list[list[Hit]]:
        faiss = _faiss()
        if len(self._vectors) == 0:
            return [[] for _ in range(len(vectors))]
        if self._index is None:
            self._index = self._build()
        params = None
        if min_quality is not None:
            allowed = np.flatnonzero(np.asarray(self._cols["quality"], np.float32) >= min_quality)
            if len(allowed) == 0:
                return [[] for _ in range(len(vectors))]
            sel = faiss.IDSelectorBatch(allowed.astype(np.int64))
            if isinstance(self._index, faiss.IndexHNSW):  # per-search parameters replace the index's own
                params = faiss.SearchParametersHNSW(sel=sel, efSearch=HNSW_EF_SEARCH)
            elif isinstance(self._index, faiss.IndexIVF):
                params = faiss.SearchParametersIVF(sel=sel, nprobe=IVF_NPROBE)
            else:
                params = faiss.SearchParameters(sel=sel)
            self._sel = sel  # FAISS keeps a raw pointer: keep the selector alive
        kk = min(int(k), len(self._vectors))
        scores, idx = self._index.search(np.ascontiguousarray(vectors, np.float32), kk, params=params)
        c = self._cols
        return [[Hit(c["key"][j], c["identity"][j], c["path"][j], float(s), float(c["quality"][j]))
                 for s, j in zip(srow, irow) if j >= 0] for srow, irow in zip(scores, idx)]

    # -- identities ---------------------------------------------------------------------
    def _delete(self, identity: str) -> int:
        n = sum(1 for i in self._cols["identity"] if i == identity)
        if n:
            self._append_op({"op": "delete", "identity": identity})
            self._load()
        return n

    def _rename(self, old: str, new: str) -> int:
        n = sum(1 for i in self._cols["identity"] if i == old)
        if n:
            self._append_op({"op": "rename", "old": old, "new": new})
            self._load()
        return n

    def identity_counts(self) -> dict[str, int]:
        return dict(Counter(self._cols["identity"]))

    def __len__(self) -> int:
        return len(self._cols["key"])

    def iter_batches(self, batch_size: int = 4096) -> Iterator[pa.Table]:
        for a in range(0, len(self._vectors), batch_size):
            cols = {f: v[a:a + batch_size] for f, v in self._cols.items()}
            cols["embedding"] = list(self._vectors[a:a + batch_size])
            yield pa.Table.from_pydict(cols, schema=EXPORT_SCHEMA)

    def close(self) -> None:
        if getattr(self, "_lock_fh", None) is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None
