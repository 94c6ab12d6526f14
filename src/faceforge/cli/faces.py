"""`faceforge detect|verify|embed|similarity`: faces in images and folders."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from faceforge.cli.common import (BatchOpt, DetectorOpt, DeviceOpt, JsonOpt, LandmarkerOpt, ModelOpt, OverwriteOpt,
                                  _emit, _fail, _pipeline, claim, err, interrupted_hint, out)
from faceforge.core.errors import FaceForgeError


def detect(images: list[Path] = typer.Argument(..., help="image files"),
           detector: str = DetectorOpt, device: str = DeviceOpt,
           largest: bool = typer.Option(False, "--largest", help="keep only the largest face"),
           min_face_size: float = typer.Option(0.0, "--min-face-size", help="pixels"),
           score_threshold: Optional[float] = typer.Option(None, "--score-threshold"),
           landmarker: Optional[str] = LandmarkerOpt, as_json: bool = JsonOpt) -> None:
    """Detect faces and their five landmarks."""
    from faceforge.core.files import path_text
    from faceforge.io.images import load_image
    from faceforge.vision.detectors import create_detector
    kw = {"largest_only": largest, "min_face_size": min_face_size, "device": device}
    if score_threshold is not None:
        kw["score_threshold"] = score_threshold
    try:
        from faceforge.landmarks.landmarker import with_landmarker
        det = with_landmarker(create_detector(detector, **kw), landmarker, device)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    results = []
    for path in images:  # one bad path is reported with the others, never stops them
        try:
            img = load_image(path)
            faces = det.detect(img)
            results.append({"path": path_text(path), "faces": [f.to_dict() for f in faces]})
        except FaceForgeError as exc:
            results.append({"path": path_text(path), "error": exc.reason})
    if as_json:
        _emit(results, True)
    else:
        for r in results:
            if "error" in r:
                err.print(f"[yellow]skip[/yellow] {r['path']}: {r['error']}")
                continue
            out.print(f"{r['path']}: {len(r['faces'])} face(s)")
            for f in r["faces"]:
                out.print(f"  box={f['box']} score={f['score']}")
    if all("error" in r for r in results):
        if not as_json:
            err.print("[red]error:[/red] no file could be read")
        raise typer.Exit(2)


def verify(a: Path, b: Path, detector: str = DetectorOpt, model: str = ModelOpt, device: str = DeviceOpt,
           threshold: Optional[float] = typer.Option(None, "--threshold", help="default: the model's"),
           flip: bool = typer.Option(False, "--flip", help="flip test"),
           landmarker: Optional[str] = LandmarkerOpt, as_json: bool = JsonOpt) -> None:
    """Are A and B the same person? (largest face of each image)"""
    from faceforge.api import verify as verify_faces
    try:
        pipe = _pipeline(detector, model, device, 2, flip, landmarker)
        if threshold is None and pipe.embedder.threshold is None:
            raise FaceForgeError(f"{pipe.embedder.name} has no default threshold: pass --threshold")
        r = verify_faces(a, b, threshold=threshold, pipeline=pipe)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    res = {"a": str(a), "b": str(b), "model": r.model, "score": round(r.score, 4), "threshold": r.threshold,
           "same_person": r.same}
    if as_json:
        _emit(res, True)
    else:
        verdict = "[green]same person[/green]" if r.same else "[red]different people[/red]"
        out.print(f"cosine {r.score:.4f} (threshold {r.threshold}): {verdict}")


def embed(folder: Path = typer.Argument(..., help="folder of images; identity = sub-folder name"),
          output: Path = typer.Option(..., "-o", "--output", help="embeddings .parquet"),
          detector: str = DetectorOpt, model: str = ModelOpt, device: str = DeviceOpt,
          batch_size: int = BatchOpt, flip: bool = typer.Option(False, "--flip"),
          select: str = typer.Option("all", "--select", help="all | largest | central"),
          checkpoint_every: int = typer.Option(256, "--checkpoint-every", min=1,
                                               help="faces per crash-safe part file"),
          landmarker: Optional[str] = LandmarkerOpt, overwrite: bool = OverwriteOpt, as_json: bool = JsonOpt) -> None:
    """Embed every face in a folder into Parquet. Resumable: a rerun skips done files."""
    from faceforge.pipeline import embed_folder
    try:
        with interrupted_hint(output):
            res = embed_folder(_pipeline(detector, model, device, batch_size, flip, landmarker), folder, output, select,
                               checkpoint_every, overwrite=overwrite)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit(res, True)
    else:
        out.print(f"{res['faces_written']} faces from {res['new_files']} new files → {output} "
                  f"({res['already_done']} already done, {res['skipped']} skipped: see {res['skip_log']})")


def similarity(folder: Path, output: Path = typer.Option(..., "-o", "--output", help="matrix .png"),
               detector: str = DetectorOpt, model: str = ModelOpt, device: str = DeviceOpt,
               batch_size: int = BatchOpt,
               select: str = typer.Option("all", "--select", help="all | largest | central"),
               overwrite: bool = OverwriteOpt, as_json: bool = JsonOpt) -> None:
    """Similarity matrix of all faces in a folder, sorted by name."""
    claim(as_json, overwrite, output)
    from faceforge.evaluate.workflow import similarity_matrix
    try:
        res = similarity_matrix(folder, lambda: _pipeline(detector, model, device, batch_size), output, select)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit(res, True)
    else:
        skips = res["skipped"]
        out.print(f"{len(res['labels'])} faces → {output}" + (f" ({len(skips)} files skipped)" if skips else ""))
