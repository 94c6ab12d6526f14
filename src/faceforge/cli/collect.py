"""`faceforge collect one|many|all`: identity folders from a video, a camera, a stream or a
folder of frames (resumable: rerun the same command to continue)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from faceforge.cli.common import BatchOpt, DetectorOpt, DeviceOpt, JsonOpt, ModelOpt, _emit, _fail, out
from faceforge.core.errors import FaceForgeError

collect_app = typer.Typer(help="Collect identity datasets from video.", no_args_is_help=True)

SourceArg = typer.Argument(..., help="video file, camera index (0), rtsp:// or http:// stream, or a folder of frames")
OutputOpt = typer.Option(..., "-o", "--output", help="folder for crops/, identities/, faces.parquet, sheets/")
EveryOpt = typer.Option(1, "--every", min=1, help="process every n-th frame")
RoiOpt = typer.Option(None, "--roi", help="x,y,width,height: look for faces only there")
BlurOpt = typer.Option(50.0, "--min-blur", help="sharpness gate: variance of the Laplacian above this")
ThresholdOpt = typer.Option(None, "--threshold", help="same-person cosine (default: the model card's)")
MaxFramesOpt = typer.Option(None, "--max-frames", min=1, help="stop after this many processed frames")
EnrolOpt = typer.Option(None, "--enrol", help="also enrol the identities into this gallery (FILE.db, faiss:DIR)")
CheckpointOpt = typer.Option(50, "--checkpoint-every", min=1, help="processed frames between resume points")
NameFromOpt = typer.Option(None, "--name-from", help="name identities after their match in this gallery "
                                                     "(at the threshold; else ID_k)")


def _roi(text: Optional[str]) -> tuple[int, int, int, int] | None:
    if text is None:
        return None
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"--roi is x,y,width,height in pixels, got {text!r}") from None
    return x, y, w, h


def _run(mode: str, source: str, output: Path, detector: str, model: str, device: str, batch_size: int,
         as_json: bool, enrol: Optional[str], **settings) -> None:
    from faceforge.collect.workflow import YUNET_WEAK, CollectSettings, collect
    from faceforge.pipeline import FacePipeline
    try:  # YuNet reports weaker faces too, for the tracker's second stage
        weak = {"score_threshold": YUNET_WEAK} if detector in ("auto", "yunet") else {}
        pipe = FacePipeline(detector, model, device=device, batch_size=batch_size, detector_kwargs=weak)
        res = collect(source, output, pipe, CollectSettings(mode=mode, **settings), show_progress=sys.stderr.isatty())
        if enrol:
            from faceforge.search.enrol import enrol_folder
            from faceforge.search.gallery import open_gallery
            with open_gallery(enrol) as g:
                res["enrolled"] = enrol_folder(g, pipe, output / "identities")
    except FaceForgeError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit(res, True)
        return
    r = res["run"]
    out.print(f"{r['frames_processed']} frames, {r['faces']} faces ({r['faces_per_s']} faces/s)")
    for name, s in res["identities"].items():
        out.print(f"{name}: {s['faces']} faces in {s['tracklets']} tracklets (frontal {s['frontal']}, left "
                  f"{s['left']}, right {s['right']}){'' if s['valid'] else ', not valid yet'}")
    out.print(f"identities in {output / 'identities'}/, contact sheets in {output / 'sheets'}/")


@collect_app.command("one")
def collect_one(source: str = SourceArg, output: Path = OutputOpt,
                reference: Optional[Path] = typer.Option(None, "--reference", help="a photo of the person "
                                                         "(default: the first face seen)"),
                method: str = typer.Option("graph", "--method", help="graph (through core faces) | dbscan (elbow eps)"),
                every: int = EveryOpt, roi: Optional[str] = RoiOpt, min_blur: float = BlurOpt,
                soft_blur: Optional[float] = typer.Option(
                    None, "--soft-blur", help="faces sharper than this but not past --min-blur join only by a "
                    "direct match, never linking others (small or soft faces of the person; graph method)"),
                threshold: Optional[float] = ThresholdOpt, max_frames: Optional[int] = MaxFramesOpt,
                checkpoint_every: int = CheckpointOpt, detector: str = DetectorOpt, model: str = ModelOpt,
                device: str = DeviceOpt, batch_size: int = BatchOpt, enrol: Optional[str] = EnrolOpt,
                as_json: bool = JsonOpt) -> None:
    """One person, from a reference photo: grow their folder through similar faces."""
    _run("one", source, output, detector, model, device, batch_size, as_json, enrol,
         reference=str(reference) if reference else None, method=method, every=every, roi=_roi(roi),
         min_blur=min_blur, soft_blur=soft_blur, threshold=threshold, max_frames=max_frames,
         checkpoint_every=checkpoint_every)


@collect_app.command("many")
def collect_many(source: str = SourceArg, output: Path = OutputOpt,
                 people: int = typer.Option(..., "--people", min=1, help="how many people to collect"),
                 eps: Optional[float] = typer.Option(None, "--eps", help="DBSCAN cosine eps (default: k-distance elbow)"),
                 merge: bool = typer.Option(True, "--merge/--no-merge",
                                            help="join clusters whose templates pass the same-person threshold "
                                                 "(one person split by a cut); --no-merge: the reference"),
                 every: int = EveryOpt, roi: Optional[str] = RoiOpt, min_blur: float = BlurOpt,
                 threshold: Optional[float] = ThresholdOpt, max_frames: Optional[int] = MaxFramesOpt,
                 checkpoint_every: int = CheckpointOpt, name_from: Optional[str] = NameFromOpt,
                 detector: str = DetectorOpt, model: str = ModelOpt, device: str = DeviceOpt,
                 batch_size: int = BatchOpt, enrol: Optional[str] = EnrolOpt, as_json: bool = JsonOpt) -> None:
    """N people at once: done when N clusters have enough frontal, left and right faces."""
    _run("many", source, output, detector, model, device, batch_size, as_json, enrol, people=people, eps=eps,
         merge=merge, every=every, roi=_roi(roi), min_blur=min_blur, threshold=threshold, max_frames=max_frames,
         checkpoint_every=checkpoint_every, name_from=name_from)


@collect_app.command("all")
def collect_all(source: str = SourceArg, output: Path = OutputOpt,
                every: int = EveryOpt, roi: Optional[str] = RoiOpt, min_blur: float = BlurOpt,
                threshold: Optional[float] = ThresholdOpt, max_frames: Optional[int] = MaxFramesOpt,
                checkpoint_every: int = CheckpointOpt, name_from: Optional[str] = NameFromOpt,
                detector: str = DetectorOpt, model: str = ModelOpt, device: str = DeviceOpt,
                batch_size: int = BatchOpt, enrol: Optional[str] = EnrolOpt, as_json: bool = JsonOpt) -> None:
    """Everyone in a recording: tracklets clustered into identities (N unknown)."""
    _run("all", source, output, detector, model, device, batch_size, as_json, enrol, every=every, roi=_roi(roi),
         min_blur=min_blur, threshold=threshold, max_frames=max_frames, checkpoint_every=checkpoint_every,
         name_from=name_from)
