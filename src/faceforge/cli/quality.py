"""`faceforge quality train|score|filter`: face image quality."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from faceforge.cli.common import (BatchOpt, DetectorOpt, DeviceOpt, JsonOpt, OverwriteOpt, _emit, _fail, _pipeline,
                                  claim, out)
from faceforge.core.errors import FaceForgeError

quality_app = typer.Typer(help="Face image quality: train the estimator, score, filter.", no_args_is_help=True)

@quality_app.command("train")
def quality_train(folder: Path = typer.Argument(..., help="labelled faces: FOLDER/<identity>/<image>"),
                  output: Path = typer.Option(..., "-o", "--output", help="estimator path (writes .cbm and .json)"),
                  detector: str = DetectorOpt,
                  model: str = typer.Option("dlib-r29", "--model", "-m", help="a PyTorch embedder with BatchNorm"),
                  device: str = DeviceOpt, batch_size: int = BatchOpt,
                  kind: str = typer.Option("var", "--kind", help="var | kl (BatchNorm-input features)"),
                  iterations: int = typer.Option(2500, "--iterations", min=1),
                  val_fraction: float = typer.Option(0.1, "--val-fraction", help="identities held out for early stopping"),
                  mapping: str = typer.Option("label-range", "--score-mapping", help="label-range | unit (the reference's clip(p, 0, 1)·100)"),
                  overwrite: bool = OverwriteOpt, as_json: bool = JsonOpt) -> None:
    """Fit the quality regressor on a labelled folder (labels: leave-one-out identity centres)."""
    from faceforge.quality.estimator import estimator_paths
    claim(as_json, overwrite, *estimator_paths(output))
    from faceforge.quality.workflow import train_from_folder
    try:
        est, data = train_from_folder(_pipeline(detector, model, device, batch_size), folder, kind,
                                      iterations=iterations, val_fraction=val_fraction, score_mapping=mapping)
        cbm, manifest = est.save(output)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    res = {"estimator": str(cbm), "manifest": str(manifest), "faces": len(data.paths),
           "skipped": len(data.skipped), **est.manifest["train"]}
    if as_json:
        _emit(res, True)
    else:
        t = est.manifest["train"]
        out.print(f"{res['faces']} faces ({res['skipped']} files skipped), {t['identities']} identities; "
                  f"validation RMSE {t['val_rmse']:.4f}, Spearman {t['val_spearman']:.3f} "
                  f"(best iteration {t['best_iteration']}) → {cbm}")


@quality_app.command("score")
def quality_score(source: Path = typer.Argument(..., help="embeddings .parquet, or a folder of images"),
                  output: Path = typer.Option(..., "-o", "--output", help="scored .parquet (a new file)"),
                  estimator: Optional[Path] = typer.Option(None, "--estimator", "-e", help="from `quality train`"),
                  baselines: Optional[list[str]] = typer.Option(None, "--baseline", help="add a quality_<name> "
                                                               "column: detector_score | face_size | blur | pose | "
                                                               "embedding_norm | serfiq (repeatable)"),
                  sheet: Optional[Path] = typer.Option(None, "--sheet", help="contact sheet .png of the lowest"),
                  detector: str = DetectorOpt,
                  model: str = typer.Option("dlib-r29", "--model", "-m", help="the estimator's embedder"),
                  device: str = DeviceOpt, batch_size: int = BatchOpt,
                  select: str = typer.Option("all", "--select", help="all | largest | central (folders)"),
                  overwrite: bool = OverwriteOpt, as_json: bool = JsonOpt) -> None:
    """Add a quality column (0..100) and/or baseline columns; the input is never modified."""
    claim(as_json, overwrite, output)
    from faceforge.quality.estimator import QualityEstimator
    from faceforge.quality.workflow import score_source
    try:
        pipe = _pipeline(detector, model, device, batch_size)
        est = QualityEstimator.load(estimator) if estimator else None
        res = score_source(source, output, pipe, est, baselines or (), select, sheet, overwrite)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit(res, True)
    else:
        out.print(f"{res['faces']} faces scored → {output} ({res['column']}: " +
                  ", ".join(f"{k} {v:.4g}" for k, v in res["quality"].items()) + ")")


@quality_app.command("filter")
def quality_filter(scored: Path = typer.Argument(..., help="scored embeddings .parquet"),
                   output: Path = typer.Option(..., "-o", "--output", help="folder for keep.txt, drop.txt, summary.json"),
                   drop_percent: Optional[float] = typer.Option(None, "--drop-percent", help="drop the lowest P %"),
                   min_score: Optional[float] = typer.Option(None, "--min-score", help="drop below this score"),
                   column: str = typer.Option("quality", "--column", help="quality or a quality_<baseline> column"),
                   sheet: bool = typer.Option(False, "--sheet", help="also write lowest.png"),
                   overwrite: bool = OverwriteOpt, as_json: bool = JsonOpt) -> None:
    """Split faces into keep/drop lists by quality; images and the Parquet are never touched."""
    claim(as_json, overwrite, output / "summary.json")
    from faceforge.quality.workflow import contact_sheet, filter_parquet
    try:
        res = filter_parquet(scored, output, drop_percent, min_score, column)
        if sheet:
            res["sheet"] = str(contact_sheet(scored, output / "lowest.png", column=column))
    except FaceForgeError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit(res, True)
    else:
        out.print(f"kept {res['kept']} of {res['faces']} faces (cut {res['cut']:g}) → {res['keep_list']}, "
                  f"{res['dropped']} dropped → {res['drop_list']}")
