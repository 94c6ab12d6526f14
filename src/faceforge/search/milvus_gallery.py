"""Milvus backend through pymilvus' MilvusClient: a local Milvus Lite folder (`gallery.db`, the
embedded default) or a Milvus server / cluster URI with an optional token, the same code.

One collection per gallery (FLAT, HNSW or IVF_FLAT on inner product); the model name and
dimension are collection properties, so a gallery refuses another model's vectors even when
it is opened from another machine.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Iterator

import numpy as np
import pyarrow as pa

from faceforge.core.extras import require
from faceforge.search.gallery import (EXPORT_SCHEMA, MAX_TEXT, RECORD_FIELDS, REMOTE_SCHEMES, Gallery,
                                      GalleryError, Hit, Records, register_backend)

INDEXES = {
    "flat": ({"index_type": "FLAT", "params": {}}, {}),
    "hnsw": ({"index_type": "HNSW", "params": {"M": 16, "efConstruction": 200}}, {"ef": 128}),
    "ivf": ({"index_type": "IVF_FLAT", "params": {"nlist": 1024}}, {"nprobe": 16}),
}
INSERT_BATCH = 2000   # rows per insert call (well under gRPC's message limit at 512-d)
QUERY_BATCH = 256     # query vectors per search call
GET_BATCH = 1000      # primary keys per lookup
STORED = [*RECORD_FIELDS, "vector"]
MIRROR_MAX_BYTES = 4 << 30  # a Lite gallery's vectors up to this size are also searched in process
MIRROR_AFTER_CALLS = 256    # ... once this process has made this many search calls to Milvus Lite


class _Mirror:
    """The vectors and hit fields of a Milvus Lite collection in memory, searched exactly
    (inner product, like the FLAT index) with one matrix product. Milvus Lite answers a
    single query in ~150 ms at 100k faces whatever its index, numpy in a few ms; a Lite
    folder is locked to one process, so this process sees every write and keeps the copy
    exact: inserts are appended, a delete or rename drops it and the next search reloads.

    Loading the copy costs about as much as 250-300 single queries to Milvus Lite (42 s at
    100k faces: rows come back one dict at a time), and both grow with the gallery, so a
    process builds it only after MIRROR_AFTER_CALLS searches — the rent-or-buy rule: a
    one-off `identify` of a few photos never pays the load, a service or a video pays it
    once and then answers in milliseconds, and neither spends more than twice the best."""

    def __init__(self, rows: Iterator[list[dict]], dim: int) -> None:
        keys, identity, path, quality, vecs = [], [], [], [], []
        for batch in rows:
            for r in batch:
                keys.append(r["key"]), identity.append(r["identity"]), path.append(r["path"])
                quality.append(r["quality"]), vecs.append(r["vector"])
        self.keys, self.identity, self.path = keys, identity, path
        self.quality = np.asarray(quality, np.float32)
        self.vectors = np.asarray(vecs, np.float32).reshape(-1, dim)
        self.index = set(keys)

    def append(self, records: Records) -> bool:
        """Add inserted records; False when a key is already here (Milvus keeps both rows)."""
        keys = records.keys
        if any(k in self.index for k in keys):
            return False
        self.keys += keys
        self.identity += list(records.identity)
        self.path += list(records.path)
        self.quality = np.concatenate([self.quality, np.asarray(records.quality, np.float32)])
        self.vectors = np.concatenate([self.vectors, np.asarray(records.vectors, np.float32)])
        self.index.update(keys)
        return True

    def search(self, q: np.ndarray, k: int, min_quality: float | None) -> list[list[Hit]]:
        scores = q @ self.vectors.T
        if min_quality is not None:
            scores[:, ~(self.quality >= min_quality)] = -np.inf
        k = min(k, scores.shape[1])
        if k == 0:
            return [[] for _ in range(len(q))]
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        out = []
        for row, idx in zip(scores, np.take_along_axis(top, order, axis=1)):
            out.append([Hit(self.keys[i], self.identity[i], self.path[i], float(row[i]), float(self.quality[i]))
                        for i in idx if np.isfinite(row[i])])
        return out


def _chunks(file_keys: list[str], size: int) -> list[tuple[int, int]]:
    """Row ranges of about `size` that never split one file's faces (a kill between two
    inserts then leaves whole files, which a resume recognises by their face 0)."""
    out, a = [], 0
    while a < len(file_keys):
        b = min(a + size, len(file_keys))
        while b < len(file_keys) and file_keys[b] == file_keys[b - 1]:
            b += 1
        out.append((a, b))
        a = b
    return out


def _lock_held(folder: Path) -> bool:
    lock = folder / "LOCK"
    if not lock.exists():
        return False
    with open(lock, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


class _NoAllocTimestamp(logging.Filter):
    """pymilvus' query iterator first asks for a timestamp that Milvus Lite does not implement,
    then falls back; the in-process server would log that refusal as a traceback every time."""

    def filter(self, record: logging.LogRecord) -> bool:
        tb = record.exc_info[2] if record.exc_info else None
        while tb is not None:
            if tb.tb_frame.f_code.co_name == "AllocTimestamp":
                return False
            tb = tb.tb_next
        return True


logging.getLogger("grpc._server").addFilter(_NoAllocTimestamp())


def require_milvus(local: bool) -> ModuleType:
    """pymilvus, and Milvus Lite too for a local FILE.db (both in the `search` extra)."""
    if local:
        require("milvus_lite", "search", "a Milvus Lite gallery (FILE.db)")
    return require("pymilvus", "search", "a Milvus gallery")


@contextlib.contextmanager
def _quiet(*names: str):
    """pymilvus and milvus_lite log tracebacks for errors we turn into clear messages."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


@register_backend("milvus")
class MilvusGallery(Gallery):
    mirror_searches = True  # a local Lite gallery answers searches from its in-process _Mirror
    mirror_after_calls = MIRROR_AFTER_CALLS

    def __init__(self, uri: str, collection: str = "faces", token: str = "", index: str = "flat") -> None:
        if index not in INDEXES:
            raise GalleryError(f"unknown index '{index}' (choose from {sorted(INDEXES)})")
        self.uri, self.collection, self.index_kind = uri, collection, index
        self._unflushed = False
        self._mirror: _Mirror | None = None
        self._engine_calls = 0
        self._size_checked_at = 0  # no size check before this many engine calls (a copy did not fit)
        self._local = local = uri.endswith(".db") and not uri.startswith(REMOTE_SCHEMES)
        pymilvus = require_milvus(local)
        if local:
            path = Path(uri)
            if path.exists() and not path.is_dir():
                raise GalleryError("not a Milvus Lite gallery (expected a folder made by Milvus Lite)", uri)
            if _lock_held(path):
                raise GalleryError("this gallery is open in another process (Milvus Lite allows one); "
                                   "close it there, or serve it and connect by URI", uri)
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with _quiet("pymilvus", "milvus_lite"):
                self.client = pymilvus.MilvusClient(uri=uri, token=token or "")
                self._meta_cache = self._read_meta()
        except GalleryError:
            raise
        except Exception as exc:  # pymilvus raises many types for unreachable / refused servers
            if local and _lock_held(Path(uri)):
                raise GalleryError("this gallery is open in another process (Milvus Lite allows one)", uri) from None
            raise GalleryError(f"cannot open Milvus at this URI: {exc}", uri) from None

    # -- metadata -----------------------------------------------------------------------
    def _read_meta(self) -> dict | None:
        if not self.client.has_collection(self.collection):
            return None
        props = self.client.describe_collection(self.collection).get("properties", {})
        if "faceforge.model" not in props:
            raise GalleryError(f"collection '{self.collection}' exists but was not made by faceforge", self.uri)
        self.client.load_collection(self.collection)  # a reopened collection starts released
        self.index_kind = props.get("faceforge.index", self.index_kind)  # an existing gallery keeps its own index
        return {"model": props["faceforge.model"], "dim": int(props["faceforge.dim"])}

    def _meta(self) -> dict | None:
        return self._meta_cache

    def _init(self, model: str, dim: int) -> None:
        from pymilvus import DataType, MilvusClient

        if self.client.has_collection(self.collection):  # another client of the server made it meanwhile
            self._meta_cache = self._read_meta()
            self.check_model(model, dim)
            return
        s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        s.add_field("key", DataType.VARCHAR, is_primary=True, max_length=64)
        s.add_field("file_key", DataType.VARCHAR, max_length=64)
        s.add_field("identity", DataType.VARCHAR, max_length=4 * MAX_TEXT)
        s.add_field("path", DataType.VARCHAR, max_length=4 * MAX_TEXT)
        s.add_field("face_index", DataType.INT64)
        s.add_field("quality", DataType.FLOAT)
        s.add_field("model", DataType.VARCHAR, max_length=256)
        s.add_field("vector", DataType.FLOAT_VECTOR, dim=int(dim))
        ip = self.client.prepare_index_params()
        spec, _ = INDEXES[self.index_kind]
        ip.add_index(field_name="vector", metric_type="IP", **spec)
        self.client.create_collection(self.collection, schema=s, index_params=ip)
        self.client.alter_collection_properties(
            self.collection, properties={"faceforge.model": model, "faceforge.dim": str(int(dim)),
                                         "faceforge.index": self.index_kind})
        self._meta_cache = {"model": model, "dim": int(dim)}

    # -- records ------------------------------------------------------------------------
    def _insert(self, records: Records) -> None:
        cols = records.columns(self.model)
        for a, b in _chunks(records.file_key, INSERT_BATCH):
            rows = [{**{f: v[i] for f, v in cols.items()}, "vector": records.vectors[i]} for i in range(a, b)]
            self.client.insert(self.collection, rows)
        self._unflushed = True
        if self._mirror is not None and not self._mirror.append(records):
            self._mirror = None

    def existing_keys(self, keys: list[str]) -> set[str]:
        if self._meta() is None or not keys:
            return set()
        found: set[str] = set()
        for a in range(0, len(keys), GET_BATCH):  # by primary key: no scan of the collection
            found.update(r["key"] for r in self.client.get(self.collection, ids=keys[a:a + GET_BATCH],
                                                           output_fields=["key"]))
        return found

    def _search(self, vectors: np.ndarray, k: int, min_quality: float | None) -> list[list[Hit]]:
        if self._local and self.mirror_searches:
            if self._mirror is None and self._engine_calls >= max(self.mirror_after_calls, self._size_checked_at):
                if self._collection_bytes() <= MIRROR_MAX_BYTES:
                    self._mirror = _Mirror(self._iter("", ["key", "identity", "path", "quality", "vector"], 10000),
                                           int(self.dim))
                else:  # too large for a copy: counted again only after as many more calls
                    self._size_checked_at = self._engine_calls + max(self.mirror_after_calls, 1)
            if self._mirror is not None:
                return self._mirror.search(vectors, k, min_quality)
        if self._unflushed:  # Milvus Lite scans unflushed rows ~20x slower than sealed segments
            self.client.flush(self.collection)
            self._unflushed = False
        _, params = INDEXES[self.index_kind]
        expr = "" if min_quality is None else f"quality >= {float(min_quality)!r}"
        out: list[list[Hit]] = []
        for a in range(0, len(vectors), QUERY_BATCH):
            self._engine_calls += 1
            res = self.client.search(self.collection, data=vectors[a:a + QUERY_BATCH].tolist(), limit=int(k),
                                     filter=expr, output_fields=["identity", "path", "quality"],
                                     search_params={"metric_type": "IP", "params": params})
            for hits in res:
                out.append([Hit(str(h.get("key", h.get("id"))), h["entity"]["identity"], h["entity"]["path"],
                                float(h["distance"]), float(h["entity"]["quality"])) for h in hits])
        return out

    def __len__(self) -> int:
        if self._meta() is None:
            return 0
        if self._mirror is not None:
            return len(self._mirror.keys)
        if self._unflushed:
            self.client.flush(self.collection)
            self._unflushed = False
        return int(self.client.query(self.collection, filter="", output_fields=["count(*)"])[0]["count(*)"])

    def _collection_bytes(self) -> int:
        return len(self) * int(self.dim) * 4

    def _iter(self, expr: str, fields: list[str], batch_size: int) -> Iterator[list[dict]]:
        with _quiet("pymilvus"):
            it = self.client.query_iterator(self.collection, batch_size=batch_size, filter=expr,
                                            output_fields=fields)
        try:
            while True:
                rows = it.next()
                if not rows:
                    return
                yield rows
        finally:
            it.close()

    def _keys_of(self, identity: str) -> list[str]:
        """Primary keys of an identity's records. Names are compared here, never written into
        a filter expression: a name is data, whatever characters it holds (Milvus Lite has no
        expression parameters, and NUL or backslashes do not survive its string literals)."""
        return [r["key"] for rows in self._iter("", ["key", "identity"], 10000) for r in rows
                if r["identity"] == identity]

    def _delete(self, identity: str) -> int:
        keys = self._keys_of(identity)
        for a in range(0, len(keys), GET_BATCH):
            self.client.delete(self.collection, ids=keys[a:a + GET_BATCH])
        self._unflushed = bool(keys) or self._unflushed
        self._mirror = None if keys else self._mirror
        return len(keys)

    def _rename(self, old: str, new: str) -> int:
        keys = self._keys_of(old)
        for a in range(0, len(keys), GET_BATCH):
            rows = self.client.get(self.collection, ids=keys[a:a + GET_BATCH], output_fields=STORED)
            batch = [{**r, "identity": new, "vector": np.asarray(r["vector"], np.float32)} for r in rows]
            self.client.upsert(self.collection, batch)
        self._unflushed = True
        self._mirror = None
        return len(keys)

    def identity_counts(self) -> dict[str, int]:
        if self._meta() is None:
            return {}
        return dict(Counter(r["identity"] for rows in self._iter("", ["identity"], 10000) for r in rows))

    def iter_batches(self, batch_size: int = 4096) -> Iterator[pa.Table]:
        if self._meta() is None:
            return
        for rows in self._iter("", STORED, batch_size):
            cols = {f: [r[f] for r in rows] for f in RECORD_FIELDS}
            cols["embedding"] = [np.asarray(r["vector"], np.float32) for r in rows]
            yield pa.Table.from_pydict(cols, schema=EXPORT_SCHEMA)

    def close(self) -> None:
        client, self.client = getattr(self, "client", None), None
        if client is None:
            return
        with contextlib.suppress(Exception):
            client.close()
        if self._local:
            # release the embedded server so the folder's lock is free for the next opener
            with contextlib.suppress(Exception):
                from milvus_lite.server_manager import server_manager_instance
                server_manager_instance.release_server(os.path.abspath(self.uri))
