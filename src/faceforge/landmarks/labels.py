"""Landmark label lists: one face per line, `path x1 … xK y1 … yK` in the image's pixels
(all x first, then all y, as the Sun–Wang–Tang 5-point sets are written), paths relative to
the list's folder. Points follow LANDMARK_NAMES: left eye, right eye, nose tip, left and
right mouth corner, "left" being the image's left."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceforge.core.errors import FaceForgeError

FLIP_ORDER = (1, 0, 2, 4, 3)
"""Which point each point becomes in a left-right mirrored image (the eyes swap, and the
mouth corners)."""


@dataclass(frozen=True)
class LandmarkSample:
    path: Path
    points: np.ndarray  # (K, 2) float32, x and y
    line: int  # 1-based line of the list it came from


def read_landmark_list(path: str | Path, num_points: int = 5, root: str | Path | None = None,
                       check_files: bool = True) -> list[LandmarkSample]:
    """Parse a list; a malformed line (wrong field count, a value that is not a finite
    number) or an image that does not exist is an error naming the list and the line."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise FaceForgeError(f"cannot read landmark list: {exc}", path) from None
    base = Path(root) if root is not None else path.parent
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 1 + 2 * num_points:
            raise FaceForgeError(f"line {n}: expected a path and {2 * num_points} coordinates, "
                                 f"found {len(fields) - 1} values", path)
        try:
            v = [float(f) for f in fields[1:]]
        except ValueError:
            raise FaceForgeError(f"line {n}: coordinates must be numbers: {line.strip()[:120]!r}", path) from None
        if not all(math.isfinite(x) for x in v):
            raise FaceForgeError(f"line {n}: coordinates must be finite: {line.strip()[:120]!r}", path)
        image = base / fields[0]
        if check_files and not image.is_file():
            raise FaceForgeError(f"line {n}: image not found: {image}", path)
        pts = np.array(v, np.float32).reshape(2, num_points).T
        out.append(LandmarkSample(image, np.ascontiguousarray(pts), n))
    if not out:
        raise FaceForgeError("landmark list has no faces", path)
    return out
