"""`faceforge prepare|split`: training sets from raw photos."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from faceforge.cli.common import DetectorOpt, DeviceOpt, JsonOpt, LandmarkerOpt, OverwriteOpt, _emit, _fail, claim, out
from faceforge.core.errors import FaceForgeError


def prepare(src: Path = typer.Argument(..., help="raw photos: SRC/<identity>/<image>"),
            dst: Path = typer.Argument(..., help="aligned output: DST/<identity>/<image>.jpg"),
            detector: str = DetectorOpt, device: str = DeviceOpt,
            size: int = typer.Option(112, "--size"),
            template: str = typer.Option("arcface", "--template", help="arcface | dlib-chip"),
            top: Optional[int] = typer.Option(None, "--top", help="keep the N largest identities"),
            min_images: int = typer.Option(1, "--min-images"),
            frontal_only: bool = typer.Option(False, "--frontal-only", help="also require the nose between the eyes"),
            landmarker: Optional[str] = LandmarkerOpt, as_json: bool = JsonOpt) -> None:
    """Detect, align and write a training set (skip log and landmark debug pictures beside it)."""
    from dataclasses import asdict

    from faceforge.vision.detectors import create_face_detector
    from faceforge.vision.prepare import prepare_aligned_dataset
    try:
        from faceforge.landmarks.landmarker import with_landmarker
        det = with_landmarker(create_face_detector(detector, device=device), landmarker, device)
        rep = prepare_aligned_dataset(src, dst, det, size, template, top, min_images, frontal_only)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit(asdict(rep), True)
    else:
        out.print(f"{rep.written} faces written ({rep.kept} already there), {rep.skipped} skipped "
                  f"(see {rep.skip_log}) across {rep.identities} identities")


def split(root: Path = typer.Argument(..., help="aligned dataset: ROOT/<identity>/<image>"),
          output: Path = typer.Option(..., "-o", "--output", help="folder for the lists"),
          val: float = typer.Option(0.1, "--val", help="fraction of identities"),
          test: float = typer.Option(0.1, "--test", help="fraction of identities"),
          min_images: int = typer.Option(1, "--min-images"),
          seed: int = typer.Option(0, "--seed"),
          max_same: Optional[int] = typer.Option(None, "--max-same-pairs", help="per identity"),
          overwrite: bool = OverwriteOpt, as_json: bool = JsonOpt) -> None:
    """Identity-disjoint train/val/test lists and val/test verification pairs."""
    claim(as_json, overwrite, folder=output)
    from faceforge.io.splits import write_split
    try:
        res = write_split(root, output, val, test, seed, min_images, max_same)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit(res, True)
    else:
        for k, v in res.items():
            out.print(f"{k}: {v}")
