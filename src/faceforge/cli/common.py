"""What every command group shares: consoles, common options, output and error helpers, and
the pipeline built once per set of options."""
from __future__ import annotations

import contextlib
import functools
import json
import sys
from pathlib import Path
from typing import Iterator

import typer
from rich.console import Console
from rich.markup import escape

err = Console(stderr=True)
out = Console()

DetectorOpt = typer.Option("auto", "--detector", "-d", help="auto (yunet; whole-image for a body model) | yunet | "
                                                            "dlib | mtcnn | whole-image (the image is the crop)")
ModelOpt = typer.Option("sface", "--model", "-m",
                        help="sface | sface-int8 | dlib-r29 | sface+dlib-r29 | onnx:PATH | an exported model (PATH)")
DeviceOpt = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N")
LandmarkerOpt = typer.Option(None, "--landmarker", help="hourglass (shipped) or a landmark weights file: "
                                                          "align with its points instead of the detector's")
BatchOpt = typer.Option(32, "--batch-size", "-b", min=1, help="faces per forward pass")
JsonOpt = typer.Option(False, "--json", help="print JSON to stdout")
OverwriteOpt = typer.Option(False, "--overwrite", help="replace an existing output instead of refusing")
# train / bn-finetune: replace the config's value when given
RunDeviceOpt = typer.Option(None, "--device", help="overrides the config")
RunBatchOpt = typer.Option(None, "--batch-size", help="overrides the config")
RunOutputOpt = typer.Option(None, "--output", "-o", help="overrides the config's output folder")


def _emit(obj, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _fail(exc: Exception, as_json: bool) -> None:
    if as_json:
        _emit({"error": str(exc)}, True)
    else:
        err.print(f"[red]error:[/red] {escape(str(exc))}")  # a message is text, not markup ("faceforge[search]")
    raise typer.Exit(2)


def claim(as_json: bool, overwrite: bool, *outputs: Path | None, folder: Path | None = None,
          ignore: tuple[str, ...] = ()) -> None:
    """Before any work: stop (exit 2) if an output file exists, or the output folder holds
    anything but `ignore` patterns, and --overwrite was not given."""
    from faceforge.core.errors import FaceForgeError
    from faceforge.core.files import claim_output
    try:
        for path in outputs:
            if path is not None:
                claim_output(path, overwrite)
        if folder is not None:
            claim_output(folder, overwrite, folder=True, ignore=ignore)
    except FaceForgeError as exc:
        _fail(exc, as_json)


@contextlib.contextmanager
def interrupted_hint(output: Path | str) -> Iterator[None]:
    """Ctrl-C during resumable work: say that nothing is lost and how to go on (exit 130)."""
    try:
        yield
    except KeyboardInterrupt:
        err.print(f"\n[yellow]interrupted[/yellow] — finished work is kept in {output}; rerun the same command "
                  "to resume", soft_wrap=True)
        raise typer.Exit(130) from None


@functools.lru_cache(maxsize=1)
def _pipeline(detector: str, model: str, device: str, batch_size: int, flip: bool = False,
              landmarker: str | None = None):
    """The pipeline for these options, built once per process (`eval ident` may embed three
    folders with it)."""
    from faceforge.pipeline import FacePipeline
    return FacePipeline(detector=detector, embedder=model, device=device, batch_size=batch_size, flip=flip,
                        landmarker=landmarker)
