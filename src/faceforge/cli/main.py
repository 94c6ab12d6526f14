"""`faceforge` command line: parses arguments, calls the Python API, prints or writes.

Every command takes --json for machine-readable output on stdout.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from faceforge.core.errors import FaceForgeError

app = typer.Typer(help="FaceForge: detect, align, embed, compare and evaluate faces - offline.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
eval_app = typer.Typer(help="Evaluation protocols.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")

err = Console(stderr=True)
out = Console()

DetectorOpt = typer.Option("yunet", "--detector", "-d", help="yunet | dlib | mtcnn")
ModelOpt = typer.Option("sface", "--model", "-m", help="sface | dlib-r29 | onnx:PATH")
DeviceOpt = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N")
BatchOpt = typer.Option(32, "--batch-size", "-b", min=1, help="faces per forward pass")
JsonOpt = typer.Option(False, "--json", help="print JSON to stdout")


def _emit(obj, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _fail(exc: Exception, as_json: bool) -> None:
    if as_json:
        _emit({"error": str(exc)}, True)
    else:
        err.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(2)


def _pipeline(detector: str, model: str, device: str, batch_size: int, flip: bool = False, **det_kw):
    from faceforge.pipeline import FacePipeline
    return FacePipeline(detector=detector, embedder=model, device=device, batch_size=batch_size,
                        flip=flip, detector_kwargs=det_kw)


@app.command()
def models(as_json: bool = JsonOpt) -> None:
    """List the registered detectors and embedders."""
    from faceforge import list_detectors, list_embedders
    res = {"detectors": list_detectors(), "embedders": list_embedders()}
    if as_json:
        _emit(res, True)
    else:
        out.print(f"detectors: {', '.join(res['detectors'])}\nembedders: {', '.join(res['embedders'])}")


@app.command()
def detect(images: list[Path] = typer.Argument(..., help="image files"),
           detector: str = DetectorOpt, device: str = DeviceOpt,
           largest: bool = typer.Option(False, "--largest", help="keep only the largest face"),
           min_face_size: float = typer.Option(0.0, "--min-face-size", help="pixels"),
           score_threshold: Optional[float] = typer.Option(None, "--score-threshold"),
           as_json: bool = JsonOpt) -> None:
    """Detect faces and their five landmarks."""
    from faceforge.io.images import load_image
    from faceforge.vision.detectors import create_detector
    kw = {"largest_only": largest, "min_face_size": min_face_size, "device": device}
    if score_threshold is not None:
        kw["score_threshold"] = score_threshold
    try:
        det = create_detector(detector, **kw)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    results = []
    for path in images:
        try:
            img = load_image(path)
            faces = det.detect(img)
            results.append({"path": str(path), "faces": [f.to_dict() for f in faces]})
        except FaceForgeError as exc:
            results.append({"path": str(path), "error": exc.reason})
    if as_json:
        _emit(results, True)
        return
    for r in results:
        if "error" in r:
            err.print(f"[yellow]skip[/yellow] {r['path']}: {r['error']}")
            continue
        out.print(f"{r['path']}: {len(r['faces'])} face(s)")
        for f in r["faces"]:
            out.print(f"  box={f['box']} score={f['score']}")


@app.command()
def verify(a: Path, b: Path, detector: str = DetectorOpt, model: str = ModelOpt, device: str = DeviceOpt,
           threshold: Optional[float] = typer.Option(None, "--threshold", help="default: the model's"),
           flip: bool = typer.Option(False, "--flip", help="flip test"),
           as_json: bool = JsonOpt) -> None:
    """Are A and B the same person? (largest face of each image)"""
    try:
        pipe = _pipeline(detector, model, device, 2, flip)
        ea = pipe.embed_file(a, select="largest")[1][0]
        eb = pipe.embed_file(b, select="largest")[1][0]
    except FaceForgeError as exc:
        _fail(exc, as_json)
    score = float(np.dot(ea, eb))
    thr = pipe.embedder.threshold if threshold is None else threshold
    if thr is None:
        _fail(FaceForgeError(f"{pipe.embedder.name} has no default threshold: pass --threshold"), as_json)
    res = {"a": str(a), "b": str(b), "model": pipe.embedder.name, "score": round(score, 4),
           "threshold": thr, "same_person": score >= thr}
    if as_json:
        _emit(res, True)
    else:
        verdict = "[green]same person[/green]" if res["same_person"] else "[red]different people[/red]"
        out.print(f"cosine {score:.4f} (threshold {thr}): {verdict}")


@app.command()
def embed(folder: Path = typer.Argument(..., help="folder of images; identity = sub-folder name"),
          output: Path = typer.Option(..., "-o", "--output", help="embeddings .parquet"),
          detector: str = DetectorOpt, model: str = ModelOpt, device: str = DeviceOpt,
          batch_size: int = BatchOpt, flip: bool = typer.Option(False, "--flip"),
          select: str = typer.Option("all", "--select", help="all | largest | central"),
          checkpoint_every: int = typer.Option(256, "--checkpoint-every", min=1,
                                               help="faces per crash-safe part file"),
          as_json: bool = JsonOpt) -> None:
    """Embed every face in a folder into Parquet. Resumable: a rerun skips done files."""
    from faceforge.core.progress import progress
    from faceforge.io.embeddings import EmbeddingWriter
    from faceforge.io.images import list_images
    from faceforge.pipeline import FaceRecord
    try:
        files = list_images(folder)
        pipe = _pipeline(detector, model, device, batch_size, flip)
        writer = EmbeddingWriter(output, chunk_size=checkpoint_every)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    todo = [f for f in files if str(f) not in writer.done]
    n_faces = n_skips = 0
    root = folder if folder.is_dir() else folder.parent
    with writer:
        for rec in progress(pipe.process_files(todo, select=select), "embedding", total=len(todo)):
            if isinstance(rec, FaceRecord):
                rel = Path(rec.path).relative_to(root)
                writer.add({
                    "path": rec.path, "identity": rel.parts[0] if len(rel.parts) > 1 else "",
                    "face_index": rec.face_index, "box": rec.face.box.tolist(),
                    "landmarks": rec.face.landmarks.ravel().tolist(), "det_score": rec.face.score,
                    "detector": rec.face.detector, "model": pipe.embedder.name,
                    "embedding": rec.embedding.tolist()})
                n_faces += 1
            else:
                writer.add_skip(rec.to_dict())
                n_skips += 1
    res = {"output": str(output), "files": len(files), "already_done": len(files) - len(todo),
           "faces_written": n_faces, "skipped": n_skips, "skip_log": str(writer.skips_path)}
    if as_json:
        _emit(res, True)
    else:
        out.print(f"{n_faces} faces from {len(todo)} new files → {output} "
                  f"({len(files) - len(todo)} already done, {n_skips} skipped: see {writer.skips_path})")


@app.command()
def similarity(folder: Path, output: Path = typer.Option(..., "-o", "--output", help="matrix .png"),
               detector: str = DetectorOpt, model: str = ModelOpt, device: str = DeviceOpt,
               batch_size: int = BatchOpt,
               select: str = typer.Option("all", "--select", help="all | largest | central"),
               as_json: bool = JsonOpt) -> None:
    """Similarity matrix of all faces in a folder, sorted by name."""
    from faceforge.evaluate.plots import plot_similarity
    from faceforge.io.images import list_images
    from faceforge.pipeline import FaceRecord
    try:
        files = sorted(list_images(folder), key=lambda p: str(p.relative_to(folder) if folder.is_dir() else p))
        pipe = _pipeline(detector, model, device, batch_size)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    labels, embs, skips = [], [], []
    for rec in pipe.process_files(files, select=select):
        if isinstance(rec, FaceRecord):
            name = str(Path(rec.path).relative_to(folder)) if folder.is_dir() else Path(rec.path).name
            labels.append(name if rec.face_index == 0 else f"{name}#{rec.face_index}")
            embs.append(rec.embedding)
        else:
            skips.append(rec.to_dict())
    if not embs:
        _fail(FaceForgeError("no faces found in any image", folder), as_json)
    e = np.stack(embs)
    matrix = e @ e.T
    plot_similarity(matrix, labels, output, f"{pipe.embedder.name}: cosine similarity")
    res = {"output": str(output), "labels": labels, "matrix": np.round(matrix, 4).tolist(), "skipped": skips}
    if as_json:
        _emit(res, True)
    else:
        out.print(f"{len(labels)} faces → {output}" + (f" ({len(skips)} files skipped)" if skips else ""))


@eval_app.command("lfw")
def eval_lfw(root: Optional[Path] = typer.Option(None, "--root", help="LFW folder with images/ and pairs.txt"),
             detector: str = DetectorOpt, model: str = ModelOpt, device: str = DeviceOpt,
             batch_size: int = BatchOpt, flip: bool = typer.Option(False, "--flip"),
             folds: Optional[int] = typer.Option(None, "--folds", min=2, help="use only the first K folds"),
             json_out: Optional[Path] = typer.Option(None, "--json", help="write the result JSON here"),
             roc_png: Optional[Path] = typer.Option(None, "--roc", help="write the ROC plot here")) -> None:
    """LFW 10-fold verification accuracy (mean ± std), TPR at FPR, ROC."""
    from faceforge.core.data import lfw_dir
    from faceforge.core.files import atomic_write_json
    from faceforge.evaluate.lfw import evaluate_lfw
    from faceforge.evaluate.plots import plot_roc
    root = root or lfw_dir()
    try:
        pipe = _pipeline(detector, model, device, batch_size, flip)
        res = evaluate_lfw(root, pipe, folds=folds, show_progress=sys.stderr.isatty())
    except FaceForgeError as exc:
        _fail(exc, False)
    raw = res.pop("_raw")
    if roc_png:
        plot_roc({f"{res['model']} ({res['detector']})": raw["roc"]}, roc_png, "LFW pairs")
    if json_out:
        atomic_write_json(json_out, res)
    tab = Table(title=f"LFW - {res['model']} + {res['detector']}{' + flip' if res['flip'] else ''}")
    for col in ("accuracy", "best thr", "TPR@1e-3", "TPR@1e-2", "TPR@1e-1", "no face", "ms/img"):
        tab.add_column(col)
    t = res["tpr_at_fpr"]
    tab.add_row(f"{100 * res['accuracy_mean']:.2f} ± {100 * res['accuracy_std']:.2f} %",
                f"{res['best_threshold_all_pairs']:.4f}",
                *(f"{100 * t[k]['tpr']:.2f}" for k in ("0.001", "0.01", "0.1")),
                str(res["no_face_found"]), str(res["ms_per_image"]))
    (err if json_out is None else out).print(tab)


@app.command()
def demo(output: Path = typer.Option(Path("demo-output"), "-o", "--output"),
         device: str = DeviceOpt,
         lfw: bool = typer.Option(True, "--lfw/--no-lfw", help="also run LFW when it is available"),
         as_json: bool = JsonOpt) -> None:
    """The main job: faces in bundled photos with both models, plus LFW when available."""
    from faceforge.demo import run_demo
    try:
        res = run_demo(output, device=device, lfw=lfw)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit(res, True)
        return
    for model, r in res["models"].items():
        out.print(f"[bold]{model}[/bold]: faces in {', '.join(r['faces'])}; no face in {', '.join(r['no_face'])}; "
                  f"correct same/different decisions {r['correct_decisions']}")
    lfw_res = res["lfw"]
    if isinstance(lfw_res, dict):
        out.print(f"LFW ({lfw_res['model']}): {100 * lfw_res['accuracy_mean']:.2f} ± "
                  f"{100 * lfw_res['accuracy_std']:.2f} % over 10 folds, {lfw_res['no_face_found']} images without a detection")
    else:
        out.print(f"LFW {lfw_res}")
    out.print(f"outputs in {res['output_dir']}/ (verification.json, similarity_*.png, lfw.json, lfw_roc.png)")


@app.command()
def train(config: Path = typer.Argument(..., help="YAML with model/head/data/train sections"),
          resume: bool = typer.Option(True, "--resume/--no-resume", help="continue from output/last.pt"),
          device: Optional[str] = typer.Option(None, "--device"),
          batch_size: Optional[int] = typer.Option(None, "--batch-size"),
          output: Optional[Path] = typer.Option(None, "--output", "-o"),
          as_json: bool = JsonOpt) -> None:
    """Train or fine-tune a recognition model (multi-GPU: torchrun --nproc_per_node N -m faceforge.cli.main train ...)."""
    from faceforge.train import init_distributed
    from faceforge.train.config import build_trainer, load_yaml
    overrides = {k: v for k, v in {"device": device, "batch_size": batch_size,
                                   "output": str(output) if output else None}.items() if v is not None}
    try:
        init_distributed()
        trainer = build_trainer(load_yaml(config), **overrides)
        resumed = trainer.resume() if resume else False
        history = trainer.fit()
    except FaceForgeError as exc:
        _fail(exc, as_json)
    res = {"output": trainer.cfg.output, "resumed": resumed, "steps": trainer.step, "history": history,
           "best": trainer.best}
    if trainer.rank != 0:
        return
    if as_json:
        _emit(res, True)
    else:
        for row in history:
            out.print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        out.print(f"checkpoints in {trainer.cfg.output}/ (last.pt{', best.pt' if trainer.best else ''})")


@app.command()
def prepare(src: Path = typer.Argument(..., help="raw photos: SRC/<identity>/<image>"),
            dst: Path = typer.Argument(..., help="aligned output: DST/<identity>/<image>.jpg"),
            detector: str = DetectorOpt, device: str = DeviceOpt,
            size: int = typer.Option(112, "--size"),
            template: str = typer.Option("arcface", "--template", help="arcface | dlib-chip"),
            top: Optional[int] = typer.Option(None, "--top", help="keep the N largest identities"),
            min_images: int = typer.Option(1, "--min-images"),
            frontal_only: bool = typer.Option(False, "--frontal-only", help="also require the nose between the eyes"),
            as_json: bool = JsonOpt) -> None:
    """Detect, align and write a training set (skip log and landmark debug pictures beside it)."""
    from dataclasses import asdict

    from faceforge.vision.detectors import create_detector
    from faceforge.vision.prepare import prepare_aligned_dataset
    try:
        det = create_detector(detector, device=device)
        rep = prepare_aligned_dataset(src, dst, det, size, template, top, min_images, frontal_only)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit(asdict(rep), True)
    else:
        out.print(f"{rep.written} faces written ({rep.kept} already there), {rep.skipped} skipped "
                  f"(see {rep.skip_log}) across {rep.identities} identities")


@app.command()
def split(root: Path = typer.Argument(..., help="aligned dataset: ROOT/<identity>/<image>"),
          output: Path = typer.Option(..., "-o", "--output", help="folder for the lists"),
          val: float = typer.Option(0.1, "--val", help="fraction of identities"),
          test: float = typer.Option(0.1, "--test", help="fraction of identities"),
          min_images: int = typer.Option(1, "--min-images"),
          seed: int = typer.Option(0, "--seed"),
          max_same: Optional[int] = typer.Option(None, "--max-same-pairs", help="per identity"),
          as_json: bool = JsonOpt) -> None:
    """Identity-disjoint train/val/test lists and val/test verification pairs."""
    from faceforge.io.splits import identity_split, verification_pairs, write_list, write_pairs
    try:
        parts = identity_split(root, {"val": val, "test": test, "train": 1.0}, seed, min_images)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    res = {}
    for name, items in parts.items():
        write_list(output / f"{name}.txt", items)
        res[name] = {"images": len(items), "identities": len({i.split('/')[0] for i in items})}
        if name != "train" and res[name]["identities"] >= 2:
            pairs = verification_pairs(items, seed, max_same)
            write_pairs(output / f"{name}_pairs.txt", pairs)
            res[name]["pairs"] = len(pairs)
    if as_json:
        _emit(res, True)
    else:
        for k, v in res.items():
            out.print(f"{k}: {v}")


@app.command()
def export(fmt: str = typer.Argument(..., help="onnx | safetensors"),
           checkpoint: Path = typer.Argument(..., help="a training checkpoint (last.pt / best.pt)"),
           output: Path = typer.Option(..., "-o", "--output"),
           as_json: bool = JsonOpt) -> None:
    """Export a trained backbone (ONNX loads back as embedder `onnx:PATH`)."""
    from faceforge.models.backbones import create_backbone
    from faceforge.models.export import export_onnx, export_safetensors
    from faceforge.train.checkpoint import load_checkpoint, load_state
    try:
        ckpt = load_checkpoint(checkpoint)
        ident = ckpt.get("identity") or {}
        if "backbone" not in ident:
            raise FaceForgeError("checkpoint does not say which backbone it holds", checkpoint)
        kwargs = dict(ident.get("backbone_kwargs", {}))
        if ident["backbone"] == "dlib-r29":
            kwargs["pretrained"] = False
        model = create_backbone(ident["backbone"], **kwargs)
        load_state(model, ckpt["backbone"], "backbone", checkpoint)
        if fmt == "onnx":
            path = export_onnx(model, output)
        elif fmt == "safetensors":
            path = export_safetensors(model, output, ident)
        else:
            raise FaceForgeError(f"unknown export format {fmt!r} (onnx | safetensors)")
    except FaceForgeError as exc:
        _fail(exc, as_json)
    res = {"format": fmt, "output": str(path), "backbone": ident["backbone"]}
    if as_json:
        _emit(res, True)
    else:
        out.print(f"{ident['backbone']} → {path}")


@app.command("install-weights")
def install_weights() -> None:
    """Extract the MTCNN weights from the facenet-pytorch wheel (pip download, once)."""
    from faceforge.vision.detectors.mtcnn import install_mtcnn_weights
    out.print(f"MTCNN weights in {install_mtcnn_weights()}")


if __name__ == "__main__":
    app()
