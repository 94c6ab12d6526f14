"""Labelled face datasets: a folder per identity, or insightface RecordIO.

Items are (RGB uint8 H×W×3 array, class index); `transform` (if given) is applied to the
array. Both are torch Datasets, so a DataLoader (and a DistributedSampler) can drive them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
from torch.utils.data import Dataset

from faceforge.core.errors import FaceForgeError
from faceforge.io.images import IMAGE_EXTENSIONS, decode_image, load_image
from faceforge.io.recordio import RecordReader


class ImageFolderDataset(Dataset):
    """root/<identity>/<image>; classes are the sorted identity names (or `classes`)."""

    def __init__(self, root: str | Path, transform: Callable | None = None,
                 classes: list[str] | None = None, files: list[str | Path] | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FaceForgeError("dataset folder not found", self.root)
        if files is None:
            files = sorted(p for p in self.root.glob("*/*")
                           if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        files = [Path(f) if Path(f).is_absolute() else self.root / f for f in files]
        if not files:
            raise FaceForgeError("no images in identity sub-folders", self.root)
        self.classes = classes if classes is not None else sorted({f.parent.name for f in files})
        index = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted({f.parent.name for f in files} - set(index))
        if unknown:
            raise FaceForgeError(f"images of identities outside the class list: {unknown[:5]}", self.root)
        self.samples = [(f, index[f.parent.name]) for f in files]
        self.transform = transform
        self.unlabelled = 0  # samples with label −1 (add_unlabelled)

    def add_unlabelled(self, folder: str | Path) -> int:
        """Append every image under `folder` (any depth) with label −1: faces without an
        identity, which only a label-free loss (embedding distillation) learns from."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FaceForgeError("unlabelled face folder not found", folder)
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise FaceForgeError("no images in the unlabelled face folder", folder)
        self.samples += [(f, -1) for f in files]
        self.unlabelled += len(files)
        return len(files)

    def key(self, i: int) -> str:
        """`<folder>/<stem>` of sample i: the name a precomputed teacher embedding is found by
        (the same for a crop and for the original photo it was cut from)."""
        path = self.samples[i][0]
        return f"{path.parent.name}/{path.stem}"

    @property
    def targets(self) -> np.ndarray:
        return np.array([c for _, c in self.samples])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        path, label = self.samples[i]
        img = load_image(path)
        return (self.transform(img) if self.transform else img), label


class RecordIODataset(Dataset):
    """insightface `train.rec` / `train.idx` (header record optional)."""

    def __init__(self, rec: str | Path, idx: str | Path | None = None, transform: Callable | None = None,
                 num_classes: int | None = None) -> None:
        self.rec_path, self.idx_path = Path(rec), (Path(idx) if idx else None)
        reader = RecordReader(rec, idx)
        head = reader.read(0) if 0 in reader.offsets else None
        if head is not None and isinstance(head.label, np.ndarray) and len(head.label) >= 2:
            n_end, c_end = int(head.label[0]), int(head.label[1])
            self.keys = list(range(1, n_end))
            header_classes = c_end - n_end
        else:
            self.keys = reader.keys
            header_classes = None
        reader.close()
        self.num_classes = num_classes if num_classes is not None else header_classes
        self.transform = transform
        # opened lazily, once per process: a reader the parent opened before DataLoader workers
        # forked shares its file offset with them, so each process (by pid) opens its own
        self._reader: RecordReader | None = None
        self._reader_pid: int | None = None

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def targets(self) -> np.ndarray:
        """Every record's class (reads the records; cached)."""
        if getattr(self, "_targets", None) is None:
            with RecordReader(self.rec_path, self.idx_path) as r:
                labels = [r.read(k).label for k in self.keys]
            self._targets = np.array([int(l if np.ndim(l) == 0 else l[0]) for l in labels])
        return self._targets

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        if self._reader is None or self._reader_pid != os.getpid():
            self._reader = RecordReader(self.rec_path, self.idx_path)
            self._reader_pid = os.getpid()
        key = self.keys[i]
        rec = self._reader.read(key)
        label = rec.label if np.ndim(rec.label) == 0 else rec.label[0]
        label = int(label)
        if self.num_classes is not None and not 0 <= label < self.num_classes:
            raise FaceForgeError(f"record {key}: label {label} out of range for {self.num_classes} classes",
                                 self.rec_path)
        img = decode_image(rec.payload, f"{self.rec_path} record {key}")
        return (self.transform(img) if self.transform else img), label
