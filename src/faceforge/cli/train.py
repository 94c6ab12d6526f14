"""`faceforge train|bn-finetune|export`: recognition models from YAML recipes, and their weights
for deployment."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.table import Table

from faceforge.cli.common import (JsonOpt, OverwriteOpt, RunBatchOpt, RunDeviceOpt, RunOutputOpt, _emit, _fail,
                                  claim, out)
from faceforge.core.errors import FaceForgeError


def _overrides(device: Optional[str], batch_size: Optional[int], output: Optional[Path], **more: Any) -> dict:
    """Command-line options that replace the config's (train / bn sections)."""
    return {k: v for k, v in {"device": device, "batch_size": batch_size,
                              "output": str(output) if output else None, **more}.items() if v is not None}


def _run(builder: Callable[..., Any], run: Callable[[Any], dict], config: Path, overrides: dict, as_json: bool,
         report: Callable[[dict], None]) -> None:
    """What `train` and `bn-finetune` share: join the process group torchrun describes, build
    from the YAML with the command-line overrides, run; only rank 0 prints the result."""
    from faceforge.train import init_distributed
    from faceforge.train.config import load_yaml
    try:
        init_distributed()
        job = builder(load_yaml(config), **overrides)
        res = run(job)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    if job.rank != 0:
        return
    if as_json:
        _emit(res, True)
    else:
        report(res)


def _print_training(res: dict) -> None:
    for row in res["history"]:
        out.print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    out.print(f"checkpoints in {res['output']}/ (last.pt{', best.pt' if res['best'] else ''})")


def _print_snapshots(res: dict) -> None:
    skip = ("snapshot", "step", "epoch", "file")
    table = Table("snapshot", "step", *(k for k in (res["history"][0] if res["history"] else {}) if k not in skip))
    for row in res["history"]:
        table.add_row(row["snapshot"], str(row["step"]), *(f"{v:.4f}" if isinstance(v, float) else str(v)
                      for k, v in row.items() if k not in skip))
    out.print(table)
    best = f"best: {res['best']['snapshot']}; " if res["best"] else ""
    out.print(f"{best}snapshots and finetuned.safetensors in {res['output']}/")


def train(config: Path = typer.Argument(..., help="YAML with model/head/data/train sections"),
          resume: bool = typer.Option(True, "--resume/--no-resume", help="continue from output/last.pt"),
          device: Optional[str] = RunDeviceOpt, batch_size: Optional[int] = RunBatchOpt,
          output: Optional[Path] = RunOutputOpt,
          num_workers: Optional[int] = typer.Option(
              None, "--num-workers", min=0,
              help="data-loading processes, overrides the config (augmentation draws per image, so results "
                   "do not depend on it)"),
          as_json: bool = JsonOpt) -> None:
    """Train or fine-tune a recognition model (multi-GPU: torchrun --nproc_per_node N -m faceforge.cli.main train ...)."""
    from faceforge.train.config import build_trainer
    _run(build_trainer, lambda trainer: trainer.run(resume), config,
         _overrides(device, batch_size, output, num_workers=num_workers), as_json, _print_training)


def bn_finetune(config: Path = typer.Argument(..., help="YAML with model, data, bn (and optional ood, val) sections"),
                device: Optional[str] = RunDeviceOpt, batch_size: Optional[int] = RunBatchOpt,
                output: Optional[Path] = RunOutputOpt,
                as_json: bool = JsonOpt) -> None:
    """Re-estimate only BatchNorm statistics (noise / blur / out-of-domain mixing); resumes a killed run."""
    from faceforge.train.config import build_bn_finetuner
    _run(build_bn_finetuner, lambda tuner: tuner.fit(), config, _overrides(device, batch_size, output), as_json,
         _print_snapshots)


def export(fmt: str = typer.Argument(..., help="onnx | safetensors"),
           checkpoint: Path = typer.Argument(..., help="a training checkpoint (last.pt / best.pt)"),
           output: Path = typer.Option(..., "-o", "--output"),
           overwrite: bool = OverwriteOpt, as_json: bool = JsonOpt) -> None:
    """Export a trained backbone (ONNX loads back as embedder `onnx:PATH`)."""
    claim(as_json, overwrite, output)
    from faceforge.train.export import export_checkpoint
    try:
        res = export_checkpoint(checkpoint, output, fmt)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit(res, True)
    else:
        out.print(f"{res['backbone']} → {res['output']}")
