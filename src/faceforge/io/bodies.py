"""Folders of full-body crops for person re-identification: root/<person>/<image>, the
camera of each image read from its file name by a named rule.

Re-id is scored across cameras, so every image needs its camera; benchmark sets encode it
in the name: CUHK03 as `<person>_<NN>` (NN 00–04 from one camera of the pair, 05–09 from
the other), Market-1501 and DukeMTMC-reID as `<person>_c<camera>s…`. The folder is read
once up front: an image that does not decode or a name without a camera becomes a skip
record (file, kind, reason) instead of an error in the middle of training.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from faceforge.core.errors import FaceForgeError
from faceforge.io.images import IMAGE_EXTENSIONS, load_image


def _cuhk03(stem: str) -> int:
    m = re.fullmatch(r".+_(\d{2})", stem)
    if not m:
        raise ValueError("expected <person>_<NN> (NN 00-09)")
    return int(m.group(1)) // 5


def _market1501(stem: str) -> int:
    m = re.search(r"_c(\d+)", stem)
    if not m:
        raise ValueError("expected <person>_c<camera>... (Market-1501 naming)")
    return int(m.group(1))


CAMERA_RULES: dict[str, Callable[[str], int]] = {"cuhk03": _cuhk03, "market1501": _market1501}


def camera_of(path: str | Path, rule: str = "cuhk03") -> int:
    """The camera of one image by `rule` (a key of CAMERA_RULES); FaceForgeError naming the file."""
    if rule not in CAMERA_RULES:
        raise FaceForgeError(f"unknown camera rule {rule!r}; one of {', '.join(CAMERA_RULES)}")
    try:
        return CAMERA_RULES[rule](Path(path).stem)
    except ValueError as exc:
        raise FaceForgeError(f"no camera in the file name: {exc}", path) from None


@dataclass
class BodyFolder:
    """The usable images of a body folder with their person (folder name) and camera."""

    root: Path
    files: list[Path]
    people: list[str]
    cameras: np.ndarray
    skipped: list[dict] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.people))

    @property
    def targets(self) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[p] for p in self.people])


def scan_body_folder(root: str | Path, camera: str = "cuhk03") -> BodyFolder:
    """Every image of root/<person>/ that decodes and names its camera; the others skipped."""
    root = Path(root)
    if camera not in CAMERA_RULES:
        raise FaceForgeError(f"unknown camera rule {camera!r}; one of {', '.join(CAMERA_RULES)}")
    if not root.is_dir():
        raise FaceForgeError("body image folder not found", root)
    candidates = sorted(p for p in root.glob("*/*") if p.suffix.lower() in IMAGE_EXTENSIONS and not p.is_dir())
    if not candidates:
        raise FaceForgeError("no images in person sub-folders (<root>/<person>/<image>)", root)
    files, people, cams, skipped = [], [], [], []
    for path in candidates:
        try:
            cam = camera_of(path, camera)
        except FaceForgeError as exc:
            skipped.append({"path": str(path), "kind": "no_camera", "reason": exc.reason})
            continue
        try:
            load_image(path)
        except FaceForgeError as exc:
            skipped.append({"path": str(path), "kind": "unreadable", "reason": exc.reason})
            continue
        files.append(path)
        people.append(path.parent.name)
        cams.append(cam)
    if not files:
        raise FaceForgeError(f"none of the {len(candidates)} images is usable (first: {skipped[0]['reason']})", root)
    return BodyFolder(root, files, people, np.array(cams), skipped)
