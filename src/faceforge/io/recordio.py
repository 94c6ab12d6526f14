"""insightface RecordIO datasets (`train.rec` + `train.idx`), read and written without mxnet.

Framing (MXNet RecordIO): each record is the magic 0xced7230a, a uint32 whose low 29 bits
are the length and top 3 bits a continuation flag (0 whole, 1 first, 2 middle, 3 last
part), then the payload padded to 4 bytes. A writer splits a payload wherever the magic
occurs at a 4-byte-aligned position, leaving those 4 bytes out (so a reader that scans for
the magic never mistakes data for a record start); a reader puts the magic back between
the parts. The `.idx` file has one "key<TAB>offset" line
per record. A payload is insightface's IRHeader — flag (uint32), label (float32), id and
id2 (uint64) — then `flag` float32 labels if flag > 0, then the encoded image.

insightface's layout: record 0 is a header with labels (N + 1, N + 1 + C); records 1..N are
images with their class as label; records N+1..N+C hold each identity's [start, end) range.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from faceforge.core.errors import FaceForgeError
from faceforge.core.files import atomic_write

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_HEADER = struct.Struct("<IfQQ")


def frame_parts(payload: bytes) -> list[tuple[int, bytes]]:
    """(continuation flag, bytes) parts of one record: split at each 4-byte-aligned magic,
    which is left out (0 whole; 1 first, 2 middle, 3 last)."""
    cuts = [i for i in range(0, len(payload) - 3, 4) if payload[i:i + 4] == _MAGIC_BYTES]
    if not cuts:
        return [(0, payload)]
    pieces, start = [], 0
    for i in cuts:
        pieces.append(payload[start:i])
        start = i + 4
    pieces.append(payload[start:])
    return [(1 if k == 0 else 3 if k == len(pieces) - 1 else 2, p) for k, p in enumerate(pieces)]


@dataclass
class Record:
    label: float | np.ndarray   # a number, or the float32 label array when flag > 0
    id: int
    id2: int
    payload: bytes              # the encoded image (empty for header/identity records)


def pack(label: float | Sequence[float], payload: bytes = b"", id: int = 0, id2: int = 0) -> bytes:
    if np.ndim(label) == 0:
        return _HEADER.pack(0, float(label), id, id2) + payload
    arr = np.asarray(label, dtype="<f4")
    return _HEADER.pack(len(arr), 0.0, id, id2) + arr.tobytes() + payload


def unpack(data: bytes, where: str = "") -> Record:
    if len(data) < _HEADER.size:
        raise FaceForgeError(f"record too short for a header ({len(data)} bytes){where}")
    flag, label, id_, id2 = _HEADER.unpack_from(data)
    body = data[_HEADER.size:]
    if flag > 0:
        if len(body) < 4 * flag:
            raise FaceForgeError(f"record's label array is truncated{where}")
        return Record(np.frombuffer(body[:4 * flag], dtype="<f4").copy(), id_, id2, body[4 * flag:])
    return Record(label, id_, id2, body)


class RecordReader:
    """Random access by key through the `.idx` file (required: insightface always writes it)."""

    def __init__(self, rec: str | Path, idx: str | Path | None = None) -> None:
        self.rec = Path(rec)
        self.idx = Path(idx) if idx else self.rec.with_suffix(".idx")
        if not self.rec.is_file():
            raise FaceForgeError("RecordIO file not found", self.rec)
        if not self.idx.is_file():
            raise FaceForgeError(f"index file missing (expected {self.idx.name} beside the .rec; "
                                 "`faceforge` can only read indexed RecordIO)", self.idx)
        self.offsets: dict[int, int] = {}
        for n, line in enumerate(self.idx.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                key, off = line.split("\t")
                self.offsets[int(key)] = int(off)
            except ValueError:
                raise FaceForgeError(f"line {n}: expected 'key<TAB>offset', got {line[:60]!r}", self.idx) from None
        self._fh = open(self.rec, "rb")
        self._size = self.rec.stat().st_size

    @property
    def keys(self) -> list[int]:
        return sorted(self.offsets)

    def read_raw(self, key: int) -> bytes:
        if key not in self.offsets:
            raise FaceForgeError(f"record {key} is not in the index", self.idx)
        self._fh.seek(self.offsets[key])
        parts = []
        while True:
            head = self._fh.read(8)
            if len(head) < 8:
                raise FaceForgeError(f"record {key} is truncated (file ends)", self.rec)
            magic, lrec = struct.unpack("<II", head)
            if magic != MAGIC:
                raise FaceForgeError(f"record {key}: bad magic {magic:#x} at offset {self._fh.tell() - 8} "
                                     "(corrupt file or wrong index)", self.rec)
            cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
            data = self._fh.read(length)
            if len(data) < length:
                raise FaceForgeError(f"record {key} is truncated ({len(data)} of {length} bytes)", self.rec)
            self._fh.read((4 - length % 4) % 4)
            parts.append(data)
            if cflag in (0, 3):
                return _MAGIC_BYTES.join(parts)  # the magic each split took out

    def read(self, key: int) -> Record:
        return unpack(self.read_raw(key), f" (record {key} of {self.rec})")

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "RecordReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_recordio(rec: str | Path, items: Iterable[tuple[bytes, int]], num_classes: int | None = None) -> int:
    """Write (encoded image, class) pairs in insightface's layout (header + identity records),
    `.rec` and `.idx` each atomically. Returns the number of images."""
    rec = Path(rec)
    idx_lines: list[str] = []
    ranges: dict[int, list[int]] = {}
    images: list[tuple[bytes, int]] = list(items)
    n = len(images)
    classes = sorted({c for _, c in images})
    c_total = num_classes if num_classes is not None else (max(classes) + 1 if classes else 0)
    with atomic_write(rec, "wb") as fh:
        def put(key: int, payload: bytes) -> None:
            idx_lines.append(f"{key}\t{fh.tell()}")
            for cflag, part in frame_parts(payload):
                fh.write(struct.pack("<II", MAGIC, (cflag << 29) | len(part)))
                fh.write(part + b"\x00" * ((4 - len(part) % 4) % 4))

        put(0, pack([n + 1, n + 1 + c_total]))
        for i, (img, c) in enumerate(images, 1):
            if not 0 <= c < c_total:
                raise FaceForgeError(f"label {c} out of range for {c_total} classes (item {i - 1})")
            ranges.setdefault(c, [i, i + 1])[1] = i + 1
            put(i, pack(float(c), img, id=i))
        for c in range(c_total):
            start, end = ranges.get(c, [0, 0])
            put(n + 1 + c, pack([start, end]))
    with atomic_write(rec.with_suffix(".idx"), "w") as fh:
        fh.write("\n".join(idx_lines) + "\n")
    return n
