"""Raw photos → an aligned training set: root/<identity>/<image>.jpg.

Identities are taken largest first (top N optional); in each photo the central face is
aligned onto the template; files that cannot be used go to a skip log (JSON lines) and the
first photo of each identity is drawn with its landmarks into a debug folder. Existing
outputs are kept, so a rerun after an interruption only does what is left.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from faceforge.core.errors import FaceForgeError
from faceforge.core.files import atomic_write
from faceforge.core.progress import progress
from faceforge.io.images import IMAGE_EXTENSIONS, load_image
from faceforge.vision.align import align_face, landmarks_plausible
from faceforge.vision.detectors.base import Detector, central_face


@dataclass
class PrepareReport:
    written: int
    kept: int
    skipped: int
    identities: int
    skip_log: str


def _save_jpg(path: Path, arr: np.ndarray) -> None:
    with atomic_write(path, "wb") as fh:
        Image.fromarray(arr).save(fh, format="JPEG", quality=95)


def draw_face(image: np.ndarray, box, landmarks) -> np.ndarray:
    """A copy of the image with the box and the five points drawn (one colour per point)."""
    out = image.copy()
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    cv2.rectangle(out, (x1, y1), (x2, y2), (0, 255, 0), 2)
    for (x, y), c in zip(landmarks, [(255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 0, 255), (0, 255, 255)]):
        cv2.circle(out, (int(round(x)), int(round(y))), 3, c, -1)
    return out


def prepare_aligned_dataset(src: str | Path, dst: str | Path, detector: Detector, size: int = 112,
                            template: str = "arcface", top: int | None = None, min_images: int = 1,
                            frontal_only: bool = False) -> PrepareReport:
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FaceForgeError("source folder not found", src)
    ids = {}
    for d in sorted(p for p in src.iterdir() if p.is_dir()):
        files = sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        if len(files) >= min_images:
            ids[d.name] = files
    if not ids:
        raise FaceForgeError(f"no identity sub-folders with at least {min_images} images", src)
    order = sorted(ids, key=lambda k: (-len(ids[k]), k))[: top or None]
    dst.mkdir(parents=True, exist_ok=True)
    skip_log = dst.parent / f"{dst.name}.skips.jsonl"
    debug_dir = dst.parent / f"{dst.name}.debug"
    written = kept = skipped = 0
    jobs = [(name, f) for name in order for f in ids[name]]
    with open(skip_log, "a", encoding="utf-8") as log:
        for name, f in progress(jobs, "aligning"):
            out = dst / name / (f.stem + ".jpg")
            if out.exists():
                kept += 1
                continue
            try:
                image = load_image(f)
                face = central_face(detector.detect(image), image.shape)
                if face is None:
                    raise FaceForgeError("no face found", f)
                if not landmarks_plausible(face.landmarks, frontal=frontal_only):
                    raise FaceForgeError("landmarks failed the plausibility check", f)
            except FaceForgeError as exc:
                log.write(json.dumps({"path": str(f), "reason": exc.reason}) + "\n")
                log.flush()
                skipped += 1
                continue
            crop = align_face(image, face.landmarks, template, size, face.native_landmarks)
            out.parent.mkdir(parents=True, exist_ok=True)
            _save_jpg(out, crop)
            written += 1
            dbg = debug_dir / f"{name}.jpg"
            if not dbg.exists():
                debug_dir.mkdir(parents=True, exist_ok=True)
                _save_jpg(dbg, draw_face(image, face.box, face.landmarks))
    return PrepareReport(written, kept, skipped, len(order), str(skip_log))
