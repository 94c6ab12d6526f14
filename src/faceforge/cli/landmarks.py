"""`faceforge landmarks train|eval|predict`: the learned five-point landmarker."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from faceforge.cli.common import (DetectorOpt, DeviceOpt, JsonOpt, RunBatchOpt, RunDeviceOpt, RunOutputOpt, _emit,
                                  _fail, err, out)
from faceforge.core.errors import FaceForgeError

landmarks_app = typer.Typer(help="Learned facial landmarks: train the hourglass, evaluate NME, draw predictions.",
                            no_args_is_help=True)
WeightsOpt = typer.Option(None, "--landmarker", "-l", help="landmark weights (.safetensors with its card); "
                                                            "default: the shipped hourglass")


@landmarks_app.command("train")
def landmarks_train(config: Path = typer.Argument(..., help="YAML with model/loss/data/train sections"),
                    resume: bool = typer.Option(True, "--resume/--no-resume", help="continue from output/last.pt"),
                    device: Optional[str] = RunDeviceOpt, batch_size: Optional[int] = RunBatchOpt,
                    output: Optional[Path] = RunOutputOpt, as_json: bool = JsonOpt) -> None:
    """Train a landmark network on a labelled list (the trainer's landmark task; resumable)."""
    from faceforge.cli.train import _overrides, _print_training, _run
    from faceforge.train.config import build_trainer

    def build(cfg: dict, **overrides):
        if cfg.get("task", "landmarks") != "landmarks":
            raise FaceForgeError(f"this config is for task {cfg['task']!r}: use `faceforge train`", config)
        return build_trainer({**cfg, "task": "landmarks"}, **overrides)
    _run(build, lambda trainer: trainer.run(resume), config, _overrides(device, batch_size, output), as_json,
         _print_training)


@landmarks_app.command("eval")
def landmarks_eval(labels: Path = typer.Argument(..., help="landmark list: path x1..x5 y1..y5 per line"),
                   landmarker: Optional[Path] = WeightsOpt,
                   detector: Optional[str] = typer.Option(None, "--detector", "-d",
                                                          help="score this detector's own points instead"),
                   offset_from: Optional[Path] = typer.Option(None, "--offset-from",
                                                              help="another labelled list: also report after the "
                                                                   "mean per-point offset fitted on it"),
                   ced: Optional[Path] = typer.Option(None, "--ced", help="write the CED curve (PNG)"),
                   device: str = DeviceOpt, as_json: bool = JsonOpt) -> None:
    """NME per point and overall, failure rate at NME > 0.1, CED AUC@0.1 on labelled crops."""
    from faceforge.evaluate.landmarks import evaluate_list
    try:
        res = evaluate_list(labels, landmarker, detector, offset_from, ced, device)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit(res, True)
        return
    for key in ("raw", "offset_corrected"):
        if key in res:
            r = res[key]
            out.print(f"{key}: NME {100 * r['nme']:.2f} % (median {100 * r['median']:.2f} %), failures "
                      f"{100 * r['failure_rate']:.2f} %, AUC@0.1 {r['auc_0.1']:.3f}; per point "
                      + ", ".join(f"{k} {100 * v:.2f}" for k, v in r["per_point"].items()))
    out.print(f"{res['predictor']}: {res['found']}/{res['faces']} faces found")


@landmarks_app.command("predict")
def landmarks_predict(images: list[Path] = typer.Argument(..., help="image files"),
                      output: Path = typer.Option(..., "-o", "--output", help="folder for the drawn PNGs"),
                      landmarker: Optional[Path] = WeightsOpt, detector: str = DetectorOpt,
                      device: str = DeviceOpt, as_json: bool = JsonOpt) -> None:
    """Detect faces, predict their five points with the landmarker, draw them (OUTPUT/<stem>.png)."""
    from faceforge.landmarks.workflow import predict_images
    try:
        res = predict_images(images, output, landmarker, detector, device)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit(res, True)
        return
    for r in res:
        if "error" in r:
            err.print(f"[yellow]skip[/yellow] {r['path']}: {r['error']}")
        else:
            out.print(f"{r['path']}: {len(r['faces'])} faces → {r['drawn']}")
