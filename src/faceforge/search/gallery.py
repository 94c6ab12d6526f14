"""The gallery interface: enrolled faces (vector + identity, source path, quality, model) in a
vector store, searched by cosine (inner product of L2-normalised vectors).

Backends register themselves by name; `open_gallery(uri)` picks one from the URI so the same
code runs on a Milvus Lite file, a Milvus server or cluster, or FAISS in process:

    gallery.db                    Milvus Lite (embedded; the default)
    http://host:19530, https://…  Milvus server / cluster (optionally with a token)
    faiss:DIR  or  DIR.faiss      FAISS in this process, persisted in DIR

A gallery belongs to one model: the first enrolment fixes the model name and dimension and
any later vectors from another model are refused.
"""
from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from faceforge.core.errors import FaceForgeError
from faceforge.core.registry import Registry
from faceforge.core.vectors import unit_rows

NO_QUALITY = -1.0  # stored where a record has no quality score (0..100 otherwise)
MAX_TEXT = 4096    # longest identity / path a backend stores

# One record per enrolled face; `key` is unique and derived from path, content and face index,
# so enrolling the same file twice stores it once. Every backend stores these and a vector.
RECORD_FIELDS = ("key", "file_key", "identity", "path", "face_index", "quality", "model")
REMOTE_SCHEMES = ("http://", "https://", "tcp://", "grpc://")  # a Milvus server; FILE.db is Milvus Lite

EXPORT_SCHEMA = pa.schema([
    ("key", pa.string()), ("file_key", pa.string()), ("identity", pa.string()), ("path", pa.string()),
    ("face_index", pa.int32()), ("quality", pa.float32()), ("model", pa.string()),
    ("embedding", pa.list_(pa.float32())),
])


class GalleryError(FaceForgeError):
    """The gallery cannot be opened, is in use, or refuses what it was given."""


def _check_text(name: str, value: str) -> None:
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise GalleryError(f"{name} must be a string of 1..{MAX_TEXT} characters, got {value!r:.80}")


def file_key(path: str, content_hash: str) -> str:
    """The identity of one enrolled file: its path and the hash of its content."""
    return hashlib.sha1(f"{path}\0{content_hash}".encode()).hexdigest()


def content_key(path: str, data: bytes) -> str:
    """file_key for content held in memory (an upload, a decoded image, an embedding)."""
    return file_key(path, hashlib.sha256(data).hexdigest())


def record_key(fkey: str, face_index: int) -> str:
    return f"{fkey}-{int(face_index)}"


@dataclass
class Hit:
    """One search result."""
    key: str
    identity: str
    path: str
    score: float
    quality: float


@dataclass
class Records:
    """A batch of faces to enrol: metadata columns and an N×D matrix."""
    identity: list[str]
    path: list[str]
    file_key: list[str]
    face_index: list[int]
    vectors: np.ndarray
    quality: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.identity)
        if not self.quality:
            self.quality = [NO_QUALITY] * n
        lengths = {len(self.path), len(self.file_key), len(self.face_index), len(self.quality), len(self.vectors)}
        if lengths != {n}:
            raise GalleryError(f"records: columns of different lengths {sorted(lengths)}")
        for name in ("identity", "path"):
            for v in getattr(self, name):
                _check_text(name, v)
        self.quality = [NO_QUALITY if q is None or (isinstance(q, float) and math.isnan(q)) else float(q)
                        for q in self.quality]
        self.vectors = unit_rows(self.vectors, "gallery vectors", np.float32) if n else \
            np.zeros((0, self.vectors.shape[1] if np.ndim(self.vectors) == 2 else 0), np.float32)

    @property
    def keys(self) -> list[str]:
        return [record_key(f, i) for f, i in zip(self.file_key, self.face_index)]

    def columns(self, model: str) -> dict[str, list]:
        """The RECORD_FIELDS of every row, as stored."""
        return {"key": self.keys, "file_key": self.file_key, "identity": self.identity, "path": self.path,
                "face_index": [int(i) for i in self.face_index], "quality": self.quality,
                "model": [model] * len(self)}

    def __len__(self) -> int:
        return len(self.identity)

    def take(self, rows: np.ndarray | list[int]) -> "Records":
        rows = list(rows)
        return Records([self.identity[i] for i in rows], [self.path[i] for i in rows],
                       [self.file_key[i] for i in rows], [self.face_index[i] for i in rows],
                       self.vectors[rows], [self.quality[i] for i in rows])


class Gallery(ABC):
    """What every backend implements; model bookkeeping and checks live here."""

    uri: str
    index_kind: str      # flat | hnsw | ivf, fixed when the gallery is created
    backend: str = ""    # the registered name

    # -- backend primitives -------------------------------------------------------------
    @abstractmethod
    def _meta(self) -> dict | None:
        """{'model', 'dim'} once the gallery has been initialised, else None."""

    @abstractmethod
    def _init(self, model: str, dim: int) -> None:
        """Create the storage for vectors of `dim` from `model`."""

    @abstractmethod
    def _insert(self, records: Records) -> None:
        """Store new records durably (the call returns only once they are acknowledged)."""

    @abstractmethod
    def existing_keys(self, keys: list[str]) -> set[str]:
        """The subset of these record keys already stored (a primary-key lookup)."""

    @abstractmethod
    def _search(self, vectors: np.ndarray, k: int, min_quality: float | None) -> list[list[Hit]]: ...

    @abstractmethod
    def _delete(self, identity: str) -> int: ...

    @abstractmethod
    def _rename(self, old: str, new: str) -> int: ...

    @abstractmethod
    def identity_counts(self) -> dict[str, int]: ...

    @abstractmethod
    def iter_batches(self, batch_size: int = 4096) -> Iterator[pa.Table]:
        """Every record with its vector, as EXPORT_SCHEMA tables."""

    @abstractmethod
    def close(self) -> None: ...

    # -- shared behaviour ---------------------------------------------------------------
    @property
    def model(self) -> str | None:
        meta = self._meta()
        return None if meta is None else meta["model"]

    @property
    def dim(self) -> int | None:
        meta = self._meta()
        return None if meta is None else int(meta["dim"])

    def check_model(self, model: str, dim: int) -> None:
        """Refuse vectors from another model (or of another size) than the gallery's."""
        meta = self._meta()
        if meta is None:
            return
        if meta["model"] != model:
            raise GalleryError(f"this gallery holds '{meta['model']}' embeddings; refusing '{model}' vectors "
                               "(embeddings of different models are not comparable)", self.uri)
        if int(meta["dim"]) != int(dim):
            raise GalleryError(f"this gallery holds {meta['dim']}-d vectors; got {dim}-d", self.uri)

    def add(self, records: Records, model: str) -> int:
        """Enrol records (skipping keys already present); the number newly stored."""
        if len(records) == 0:
            return 0
        dim = records.vectors.shape[1]
        self.check_model(model, dim)
        if self._meta() is None:
            self._init(model, dim)
        keys = records.keys
        done = self.existing_keys(sorted(set(keys)))
        fresh = []
        for i, k in enumerate(keys):  # duplicates inside the batch too
            if k not in done:
                done.add(k)
                fresh.append(i)
        if fresh:
            self._insert(records.take(fresh))
        return len(fresh)

    def delete_identity(self, identity: str) -> int:
        """Remove every record of this identity; the number removed."""
        return 0 if self._meta() is None else self._delete(identity)

    def rename_identity(self, old: str, new: str) -> int:
        """Move every record of `old` to `new` (merging if `new` exists); the number moved."""
        _check_text("identity", new)
        return 0 if self._meta() is None or old == new else self._rename(old, new)

    def existing_file_keys(self, file_keys: list[str]) -> set[str]:
        """The files among these already enrolled: a file's faces are stored together and
        face 0 is always among them, so its key stands for the file."""
        first = {record_key(f, 0): f for f in file_keys}
        return {first[k] for k in self.existing_keys(list(first))}

    def search(self, vectors: np.ndarray, k: int = 10, min_quality: float | None = None,
               model: str | None = None) -> list[list[Hit]]:
        """The k most similar records per query row, best first."""
        if k < 1:
            raise GalleryError(f"k must be ≥ 1, got {k}")
        q = np.asarray(vectors, dtype=np.float32)
        if q.ndim == 1:
            q = q[None]
        meta = self._meta()
        if meta is None:
            return [[] for _ in range(len(q))]
        if model is not None:
            self.check_model(model, q.shape[1])
        elif q.shape[1] != int(meta["dim"]):
            raise GalleryError(f"this gallery holds {meta['dim']}-d vectors; got {q.shape[1]}-d queries", self.uri)
        if len(q) == 0:
            return []
        return self._search(unit_rows(q, "query vectors", np.float32), k, min_quality)

    def __len__(self) -> int:
        """Records stored (a 1:N threshold depends on it: gallery_threshold)."""
        return int(sum(self.identity_counts().values()))

    def stats(self) -> dict:
        counts = self.identity_counts()
        return {"uri": self.uri, "backend": type(self).backend, "index": self.index_kind, "model": self.model,
                "dim": self.dim, "records": int(sum(counts.values())), "identities": len(counts)}

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


GALLERIES: "Registry[Gallery]" = Registry("gallery backend", modules=(
    "faceforge.search.faiss_gallery", "faceforge.search.milvus_gallery"), name_attr="backend")
register_backend = GALLERIES.register


def list_backends() -> list[str]:
    return GALLERIES.names()


def backend_for(uri: str) -> str:
    """Which backend a URI names."""
    if uri.startswith("faiss:") or uri.rstrip("/").endswith(".faiss"):
        return "faiss"
    if uri.startswith(REMOTE_SCHEMES) or uri.endswith(".db"):
        return "milvus"
    raise GalleryError("unknown gallery URI: use FILE.db (Milvus Lite), http(s)://HOST:PORT (Milvus server) "
                       "or faiss:DIR / DIR.faiss (FAISS in process)", uri)


def open_gallery(uri: str | Path, collection: str = "faces", token: str = "", index: str = "flat",
                 device: str = "auto") -> Gallery:
    """Open (or create) the gallery at `uri`; see the module doc for the forms. `device` is
    FAISS's: auto puts flat and IVF indexes on a GPU when FAISS has one."""
    uri = str(uri)
    name = backend_for(uri)
    if name == "faiss":
        return GALLERIES.get(name)(uri.removeprefix("faiss:"), index=index, device=device)
    return GALLERIES.get(name)(uri, collection=collection, token=token, index=index)
