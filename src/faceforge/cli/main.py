"""`faceforge` command line: parses arguments, calls the Python API, prints or writes.

Every command takes --json for machine-readable output on stdout.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.table import Table

from faceforge.cli.common import (BatchOpt, DetectorOpt, DeviceOpt, JsonOpt, ModelOpt, OverwriteOpt, RunBatchOpt,
                                  RunDeviceOpt, RunOutputOpt, _emit, _fail, _pipeline, claim, err, interrupted_hint,
                                  out)
from faceforge.cli.gallery import gallery_app
from faceforge.cli.serve import serve
from faceforge.core.errors import FaceForgeError
from faceforge.evaluate.compare import percent

app = typer.Typer(help="FaceForge: detect, align, embed, compare and evaluate faces - offline.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
eval_app = typer.Typer(help="Evaluation protocols.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
quality_app = typer.Typer(help="Face image quality: train the estimator, score, filter.", no_args_is_help=True)
app.add_typer(quality_app, name="quality")
curate_app = typer.Typer(help="Dataset curation: filter labelled faces, cluster unlabelled ones.",
                         no_args_is_help=True)
app.add_typer(curate_app, name="curate")
app.add_typer(gallery_app, name="gallery")
app.command("serve")(serve)


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
    from faceforge.core.files import path_text
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
          overwrite: bool = OverwriteOpt, as_json: bool = JsonOpt) -> None:
    """Embed every face in a folder into Parquet. Resumable: a rerun skips done files."""
    from faceforge.pipeline import embed_folder
    try:
        with interrupted_hint(output):
            res = embed_folder(_pipeline(detector, model, device, batch_size, flip), folder, output, select,
                               checkpoint_every, overwrite=overwrite)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit(res, True)
    else:
        out.print(f"{res['faces_written']} faces from {res['new_files']} new files → {output} "
                  f"({res['already_done']} already done, {res['skipped']} skipped: see {res['skip_log']})")


@app.command()
def similarity(folder: Path, output: Path = typer.Option(..., "-o", "--output", help="matrix .png"),
               detector: str = DetectorOpt, model: str = ModelOpt, device: str = DeviceOpt,
               batch_size: int = BatchOpt,
               select: str = typer.Option("all", "--select", help="all | largest | central"),
               overwrite: bool = OverwriteOpt, as_json: bool = JsonOpt) -> None:
    """Similarity matrix of all faces in a folder, sorted by name."""
    claim(as_json, overwrite, output)
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
             roc_png: Optional[Path] = typer.Option(None, "--roc", help="write the ROC plot here"),
             overwrite: bool = OverwriteOpt) -> None:
    """LFW 10-fold verification accuracy (mean ± std), TPR at FPR, ROC."""
    claim(False, overwrite, json_out, roc_png)
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


FprOpt = typer.Option(None, "--fpr", help="target FPRs (repeatable; default 1e-6 … 1e-1)")
OutOpt = typer.Option(None, "--out", "-o", help="folder for metrics.json, CSV and PNG files")
EMBEDDING_CACHE = ("embeddings-*",)  # a folder embedded into --out resumes; results are claimed


def _embeddings(source: Path, out_dir: Optional[Path], detector: str, model: str, device: str, batch_size: int):
    """An embeddings Parquet as given, or a folder embedded first (one central face per image)
    into OUT/embeddings-<folder>.parquet, resumable."""
    from faceforge.evaluate.inputs import load_embedding_set
    if source.is_dir():
        import tempfile
        from faceforge.pipeline import embed_folder
        target = (out_dir or Path(tempfile.mkdtemp(prefix="faceforge-"))) / f"embeddings-{source.name}.parquet"
        res = embed_folder(_pipeline(detector, model, device, batch_size), source, target, select="central")
        err.print(f"embedded {res['faces_written']} new faces from {source} → {target} ({res['skipped']} skipped)")
        source = target
    return load_embedding_set(source)


def _scored_pairs(emb, pairs: Path, drop_missing: bool, hint: str = ""):
    """(matched pair rows, their cosines) for a pair list; images without an embedding are
    an error unless their pairs may be dropped."""
    from faceforge.evaluate.inputs import match_pairs, read_pair_file
    idx = match_pairs(emb, read_pair_file(pairs))
    if idx.missing and not drop_missing:
        raise FaceForgeError(f"{len(idx.missing)} images in the pair list have no embedding "
                             f"(e.g. {idx.missing[0]}){hint}", pairs)
    return idx, np.einsum("ij,ij->i", emb.vectors[idx.a], emb.vectors[idx.b])


def _fprs(values: Optional[list[float]]) -> tuple[float, ...]:
    from faceforge.evaluate.verification import DEFAULT_FPRS
    return tuple(values) if values else DEFAULT_FPRS


def _print_tpr(title: str, table: dict, extra: dict[str, str] | None = None) -> None:
    tab = Table(title=title)
    for k in table:
        tab.add_column(f"TPR@{k}", justify="right")
    for k in extra or {}:
        tab.add_column(k, justify="right")
    tab.add_row(*(percent(v["tpr"]) for v in table.values()),
                *(extra or {}).values())
    out.print(tab)


@eval_app.command("verify")
def eval_verify(embeddings: Path = typer.Argument(..., help="embeddings .parquet, or a folder of identity sub-folders"),
                pairs: Optional[Path] = typer.Option(None, "--pairs", help="'a b 0|1' lines or LFW pairs.txt; "
                                                     "default: every pair of images (all-pairs protocol)"),
                on_missing: str = typer.Option("error", "--on-missing", help="error | drop: pairs naming an image "
                                               "without an embedding"),
                fpr: Optional[list[float]] = FprOpt, out_dir: Optional[Path] = OutOpt,
                name: Optional[str] = typer.Option(None, "--name", help="method name in tables and plots"),
                detector: str = DetectorOpt, model: str = ModelOpt, device: str = DeviceOpt,
                batch_size: int = BatchOpt, overwrite: bool = OverwriteOpt, as_json: bool = JsonOpt) -> None:
    """1:1 verification: TPR at FPR with thresholds, EER, AUC, ROC and score distributions."""
    claim(as_json, overwrite, folder=out_dir, ignore=EMBEDDING_CACHE)
    from faceforge.evaluate.outputs import json_ready, write_verification
    from faceforge.evaluate.verification import all_pairs_scores, verification_report
    try:
        emb = _embeddings(embeddings, out_dir, detector, model, device, batch_size)
        extra = {}
        if pairs is None:
            scores, same = all_pairs_scores(emb.vectors, emb.identities)
            extra["protocol"] = "all pairs"
        else:
            idx, scores = _scored_pairs(emb, pairs, on_missing == "drop", "; --on-missing drop leaves those pairs out")
            same = idx.same
            extra = {"protocol": f"pair list {pairs}", "pairs_dropped_missing_image": len(idx.missing)}
        report, curve = verification_report(scores, same, _fprs(fpr))
    except FaceForgeError as exc:
        _fail(exc, as_json)
    name = name or emb.source.stem
    report = {"name": name, "embeddings": str(emb.source), **extra, **report}
    if out_dir:
        write_verification(out_dir, name, report, curve)
    if as_json:
        report.pop("distributions")
        _emit(json_ready(report), True)
    else:
        _print_tpr(f"{name}: {report['pairs']:,} pairs ({report['positives']:,} genuine)", report["tpr_at_fpr"],
                   {"EER %": f"{100 * report['eer']['eer']:.3f}", "AUC": f"{report['auc']:.5f}"})
        if out_dir:
            err.print(f"results → {out_dir}/")


@eval_app.command("ijbc")
def eval_ijbc(root: Path = typer.Argument(..., help="folder with loose_crop/ and meta/ (official layout)"),
              target: str = typer.Option("IJBC", "--target", help="IJBC | IJBB (meta file prefix)"),
              mode: Optional[list[str]] = typer.Option(None, "--mode", help="N?D?F? (repeatable; default all 8)"),
              features: Optional[Path] = typer.Option(None, "--features", help="raw features .npz: read if it "
                                                      "exists, else computed and written there"),
              fpr: Optional[list[float]] = FprOpt, out_dir: Optional[Path] = OutOpt,
              model: str = ModelOpt, device: str = DeviceOpt, batch_size: int = BatchOpt,
              overwrite: bool = OverwriteOpt, as_json: bool = JsonOpt) -> None:
    """IJB-C 1:1 template verification: media then template pooling, N/D/F modes."""
    claim(as_json, overwrite, folder=out_dir, ignore=EMBEDDING_CACHE)
    from faceforge.core.files import atomic_write, atomic_write_json
    from faceforge.evaluate.ijbc import MODES, embed_ijb, evaluate_ijb, read_ijb
    from faceforge.evaluate.outputs import json_ready, write_tpr_table
    from faceforge.evaluate.plots import plot_roc
    try:
        proto = read_ijb(root, target)
        if features is not None and features.is_file():
            with np.load(features, allow_pickle=False) as z:
                raw, raw_flip = z["raw"], z["raw_flip"]
            model_name = str(features)
        else:
            from faceforge.models.embedders import create_embedder
            emb = create_embedder(model, device=device, batch_size=batch_size)
            raw, raw_flip = embed_ijb(proto, emb, batch_size)
            model_name = emb.name
            if features is not None:
                with atomic_write(features, "wb") as fh:
                    np.savez(fh, raw=raw, raw_flip=raw_flip)
        res, curves = evaluate_ijb(proto, raw, raw_flip, tuple(mode) if mode else MODES, _fprs(fpr))
    except FaceForgeError as exc:
        _fail(exc, as_json)
    res = {"name": f"{target} {model_name}", **res}
    if out_dir:
        atomic_write_json(out_dir / "metrics.json", json_ready(res))
        for m, r in res["modes"].items():
            write_tpr_table(out_dir / f"tpr_at_fpr_{m}.csv", r["tpr_at_fpr"])
        plot_roc(curves, out_dir / "roc.png", f"{target} 1:1: {model_name}")
    if as_json:
        _emit(json_ready(res), True)
    else:
        tab = Table(title=f"{target} 1:1, {res['pairs']:,} template pairs: {model_name}")
        tab.add_column("mode")
        keys = list(next(iter(res["modes"].values()))["tpr_at_fpr"])
        for k in keys:
            tab.add_column(f"TPR@{k}", justify="right")
        for m, r in res["modes"].items():
            tab.add_row(m, *(percent(r["tpr_at_fpr"][k]["tpr"]) for k in keys))
        out.print(tab)


@eval_app.command("ident")
def eval_ident(probes: Path = typer.Argument(..., help="query/probe embeddings .parquet (or folder)"),
               gallery: Optional[Path] = typer.Option(None, "--gallery", help="enrolled embeddings: open-set "
                                                      "TPIR at FPIR and the CMC"),
               distractors: Optional[Path] = typer.Option(None, "--distractors", help="distractor embeddings: "
                                                          "identification rate with distractors"),
               fpir: Optional[list[float]] = typer.Option(None, "--fpir", help="target FPIRs / FPRs (repeatable)"),
               max_rank: int = typer.Option(20, "--max-rank", min=1),
               out_dir: Optional[Path] = OutOpt, detector: str = DetectorOpt, model: str = ModelOpt,
               device: str = DeviceOpt, batch_size: int = BatchOpt, overwrite: bool = OverwriteOpt,
               as_json: bool = JsonOpt) -> None:
    """Identification: open-set 1:N against a gallery, and/or the rate with distractors."""
    claim(as_json, overwrite, folder=out_dir, ignore=EMBEDDING_CACHE)
    from faceforge.core.files import atomic_write_json
    from faceforge.evaluate.identification import identification_with_distractors, open_set_identification
    from faceforge.evaluate.outputs import json_ready
    from faceforge.evaluate.plots import plot_cmc
    if gallery is None and distractors is None:
        _fail(FaceForgeError("give --gallery (open-set 1:N), --distractors (rate with distractors) or both"), as_json)
    res: dict = {}
    try:
        load = lambda p: _embeddings(p, out_dir, detector, model, device, batch_size)  # noqa: E731
        q = load(probes)
        res["probes"] = str(q.source)
        if gallery is not None:
            g = load(gallery)
            fpirs = tuple(fpir) if fpir else (1e-3, 1e-2, 1e-1)
            # one pass gives every rank: the table shows 1, 5, 10 and max_rank, the curve 1..max_rank
            o = open_set_identification(g.vectors, g.identities, q.vectors, q.identities, fpirs,
                                        ranks=range(1, max(max_rank, 10) + 1))
            o["cmc_curve"] = [o["cmc"][str(r)] for r in range(1, max_rank + 1)]
            o["cmc"] = {str(r): o["cmc"][str(r)] for r in (1, 5, 10, max_rank)}
            res["open_set"] = o
        if distractors is not None:
            d = load(distractors)
            fprs = tuple(fpir) if fpir else (0.5, 0.3, 0.1, 1e-2, 1e-3)
            res["with_distractors"] = identification_with_distractors(q.vectors, q.identities, d.vectors, fprs)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    if out_dir:
        atomic_write_json(out_dir / "metrics.json", json_ready(res))
        if "open_set" in res:
            plot_cmc({q.source.stem: np.array(res["open_set"]["cmc_curve"])}, out_dir / "cmc.png")
    if as_json:
        _emit(json_ready(res), True)
        return
    if "open_set" in res:
        o = res["open_set"]
        tab = Table(title=f"open-set 1:N: {o['mated']} mated / {o['non_mated']} non-mated probes")
        for k in o["tpir_at_fpir"]:
            tab.add_column(f"TPIR@FPIR={k}", justify="right")
        for r in o["cmc"]:
            tab.add_column(f"rank-{r}", justify="right")
        tab.add_row(*(percent(v["tpir"]) for v in o["tpir_at_fpir"].values()), *(percent(v) for v in o["cmc"].values()))
        out.print(tab)
    if "with_distractors" in res:
        tab = Table(title="identification rate with distractors")
        for col in ("FPR", "threshold", "TPR"):
            tab.add_column(col, justify="right")
        for k, v in res["with_distractors"].items():
            tab.add_row(k, f"{v['threshold']:.4f}", f"{100 * v['tpr']:.2f}")
        out.print(tab)


@eval_app.command("topk")
def eval_topk(queries: Path = typer.Argument(..., help="query embeddings .parquet (or folder)"),
              gallery: Path = typer.Option(..., "--gallery", help="gallery embeddings .parquet (or folder)"),
              k: Optional[list[int]] = typer.Option(None, "--k", help="K values (repeatable; default 1 and 3)"),
              threshold: Optional[float] = typer.Option(None, "--threshold", help="accept decisions scoring ≥ this"),
              target_precision: float = typer.Option(0.99, "--target-precision",
                                                     help="also report the threshold reaching this precision"),
              out_dir: Optional[Path] = OutOpt, detector: str = DetectorOpt, model: str = ModelOpt,
              device: str = DeviceOpt, batch_size: int = BatchOpt, overwrite: bool = OverwriteOpt,
              as_json: bool = JsonOpt) -> None:
    """Top-K majority-vote decisions: precision and recall, and the threshold for a target precision."""
    claim(as_json, overwrite, folder=out_dir, ignore=EMBEDDING_CACHE)
    from faceforge.core.files import atomic_write_json
    from faceforge.evaluate.identification import topk_decisions
    from faceforge.evaluate.outputs import json_ready
    from faceforge.evaluate.plots import plot_precision_recall
    res: dict = {"target_precision": target_precision, "k": {}}
    curves = {}
    try:
        q = _embeddings(queries, out_dir, detector, model, device, batch_size)
        g = _embeddings(gallery, out_dir, detector, model, device, batch_size)
        for kk in k or [1, 3]:
            dec = topk_decisions(g.vectors, g.identities, q.vectors, q.identities, kk)
            entry = {"at_target_precision": dec.threshold_for_precision(target_precision)}
            if threshold is not None:
                entry["at_threshold"] = dec.at(threshold)
            res["k"][str(kk)] = entry
            curves[f"top-{kk}"] = dec
    except FaceForgeError as exc:
        _fail(exc, as_json)
    if out_dir:
        atomic_write_json(out_dir / "metrics.json", json_ready(res))
        plot_precision_recall(curves, out_dir / "precision_recall.png")
    if as_json:
        _emit(json_ready(res), True)
        return
    tab = Table(title=f"top-K decisions, {len(q.paths)} queries, gallery {len(g.paths)}")
    for col in ("K", "rule", "threshold", "accepted", "precision %", "recall %"):
        tab.add_column(col, justify="right")
    for kk, entry in res["k"].items():
        for rule, r in entry.items():
            tab.add_row(kk, rule.replace("_", " "), f"{r['threshold']:.4f}", str(r["accepted"]),
                        percent(r["precision"]),
                        f"{100 * r['recall']:.2f}")
    out.print(tab)


@eval_app.command("erc")
def eval_erc(embeddings: Path = typer.Argument(..., help="embeddings .parquet with a per-image quality column"),
             quality: list[str] = typer.Option(["det_score"], "--quality", help="quality column(s) to compare "
                                               "(repeatable), e.g. quality, det_score"),
             pairs: Optional[Path] = typer.Option(None, "--pairs", help="pair list; default every pair"),
             fmr: Optional[list[float]] = typer.Option(None, "--fmr", help="FMRs fixing the threshold "
                                                       "(repeatable; default 1e-3 and 1e-4)"),
             out_dir: Optional[Path] = OutOpt, overwrite: bool = OverwriteOpt, as_json: bool = JsonOpt) -> None:
    """Error versus reject: FNMR as the lowest-quality pairs are discarded, with pAUC."""
    claim(as_json, overwrite, folder=out_dir, ignore=EMBEDDING_CACHE)
    from faceforge.core.files import atomic_write_json
    from faceforge.evaluate.erc import error_vs_reject
    from faceforge.evaluate.inputs import load_embedding_set
    from faceforge.evaluate.outputs import json_ready
    from faceforge.evaluate.plots import plot_error_vs_reject
    from faceforge.evaluate.verification import all_pairs_scores
    res: dict = {"embeddings": str(embeddings), "qualities": {}}
    try:
        emb = load_embedding_set(embeddings)
        qs = {name: emb.column(name) for name in quality}
        if pairs is None:
            scores, same, qmins = all_pairs_scores(emb.vectors, emb.identities, quality=list(qs.values()))
        else:
            idx, scores = _scored_pairs(emb, pairs, drop_missing=False)
            same = idx.same
            qmins = [np.minimum(v[idx.a], v[idx.b]) for v in qs.values()]
        for name, qm in zip(qs, qmins):
            res["qualities"][name] = error_vs_reject(scores, same, qm, qm, tuple(fmr) if fmr else (1e-3, 1e-4))
    except FaceForgeError as exc:
        _fail(exc, as_json)
    if out_dir:
        atomic_write_json(out_dir / "metrics.json", json_ready(res))
        plot_error_vs_reject(res["qualities"], out_dir / "erc.png")
    if as_json:
        _emit(json_ready(res), True)
        return
    tab = Table(title="error versus reject (FNMR at a fixed FMR threshold; lower pAUC is better)")
    for col in ("quality", "FMR", "FNMR all", "FNMR −10 %", "pAUC 20 %", "pAUC 100 %"):
        tab.add_column(col, justify="right")
    for name, r in res["qualities"].items():
        fr = r["fractions"]
        i10 = min(range(len(fr)), key=lambda i: abs(fr[i] - 0.1))
        for f, c in r["curves"].items():
            tab.add_row(name, f, f"{c['fnmr'][0]:.4f}", f"{c['fnmr'][i10]:.4f}", f"{c['pauc_20']:.5f}",
                        f"{c['pauc_100']:.5f}")
    out.print(tab)


@eval_app.command("compare")
def eval_compare(results: list[Path] = typer.Argument(..., help="result JSON files (any faceforge eval or bench)"),
                 fpr: Optional[list[str]] = typer.Option(None, "--fpr", help="columns to show, e.g. 1e-06"),
                 md: bool = typer.Option(False, "--markdown", help="print a Markdown table"),
                 as_json: bool = JsonOpt) -> None:
    """Side-by-side TPR@FPR table: rows = methods, columns = FPRs."""
    from faceforge.evaluate.compare import compare, markdown
    from faceforge.evaluate.outputs import json_ready
    try:
        cols, rows = compare(results, fpr)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit(json_ready({"fprs": cols, "rows": {n: dict(zip(cols, v)) for n, v in rows}}), True)
    elif md:
        out.print(markdown(cols, rows), markup=False, highlight=False, soft_wrap=True)
    else:
        tab = Table(title="TPR (%) at FPR")
        tab.add_column("method")
        for c in cols:
            tab.add_column(c, justify="right")
        for n, vals in rows:
            tab.add_row(n, *(percent(v) for v in vals))
        out.print(tab)


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
    g = res["gallery"]
    named = {n: r["identity"] for n, r in g["identified"].items() if isinstance(r, dict)}
    out.print(f"gallery {g['gallery']} ({g['records']} enrolled faces): " + ", ".join(f"{n} → {i}" for n, i in named.items()))
    lfw_res = res["lfw"]
    if isinstance(lfw_res, dict):
        out.print(f"LFW ({lfw_res['model']}): {100 * lfw_res['accuracy_mean']:.2f} ± "
                  f"{100 * lfw_res['accuracy_std']:.2f} % over 10 folds, {lfw_res['no_face_found']} images without a detection")
    else:
        out.print(f"LFW {lfw_res}")
    out.print(f"outputs in {res['output_dir']}/ (verification.json, similarity_*.png, gallery.db, lfw.json, "
              "lfw_roc.png)")


def _run_overrides(device: Optional[str], batch_size: Optional[int], output: Optional[Path]) -> dict:
    """Command-line options that replace the config's (train / bn sections)."""
    return {k: v for k, v in {"device": device, "batch_size": batch_size,
                              "output": str(output) if output else None}.items() if v is not None}


@app.command()
def train(config: Path = typer.Argument(..., help="YAML with model/head/data/train sections"),
          resume: bool = typer.Option(True, "--resume/--no-resume", help="continue from output/last.pt"),
          device: Optional[str] = RunDeviceOpt, batch_size: Optional[int] = RunBatchOpt,
          output: Optional[Path] = RunOutputOpt,
          as_json: bool = JsonOpt) -> None:
    """Train or fine-tune a recognition model (multi-GPU: torchrun --nproc_per_node N -m faceforge.cli.main train ...)."""
    from faceforge.train import init_distributed
    from faceforge.train.config import build_trainer, load_yaml
    overrides = _run_overrides(device, batch_size, output)
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


@app.command("bn-finetune")
def bn_finetune(config: Path = typer.Argument(..., help="YAML with model/data/bn[/ood/val] sections"),
                device: Optional[str] = RunDeviceOpt, batch_size: Optional[int] = RunBatchOpt,
                output: Optional[Path] = RunOutputOpt,
                as_json: bool = JsonOpt) -> None:
    """Re-estimate only BatchNorm statistics (noise / blur / out-of-domain mixing); resumes a killed run."""
    from faceforge.train import init_distributed
    from faceforge.train.config import build_bn_finetuner, load_yaml
    overrides = _run_overrides(device, batch_size, output)
    try:
        init_distributed()
        tuner = build_bn_finetuner(load_yaml(config), **overrides)
        res = tuner.fit()
    except FaceForgeError as exc:
        _fail(exc, as_json)
    if tuner.rank != 0:
        return
    if as_json:
        _emit(res, True)
        return
    table = Table("snapshot", "step", *(k for k in (res["history"][0] if res["history"] else {})
                                       if k not in ("snapshot", "step", "epoch", "file")))
    for row in res["history"]:
        table.add_row(row["snapshot"], str(row["step"]), *(f"{v:.4f}" if isinstance(v, float) else str(v)
                      for k, v in row.items() if k not in ("snapshot", "step", "epoch", "file")))
    out.print(table)
    best = f"best: {res['best']['snapshot']}; " if res["best"] else ""
    out.print(f"{best}snapshots and finetuned.safetensors in {res['output']}/")


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
          overwrite: bool = OverwriteOpt, as_json: bool = JsonOpt) -> None:
    """Identity-disjoint train/val/test lists and val/test verification pairs."""
    claim(as_json, overwrite, folder=output)
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
           overwrite: bool = OverwriteOpt, as_json: bool = JsonOpt) -> None:
    """Export a trained backbone (ONNX loads back as embedder `onnx:PATH`)."""
    claim(as_json, overwrite, output)
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
    import dataclasses
    from faceforge.pipeline import embed_folder
    from faceforge.quality.estimator import QualityEstimator
    from faceforge.quality.scorer import QualityScorer
    from faceforge.quality.workflow import contact_sheet, score_parquet
    try:
        pipe = _pipeline(detector, model, device, batch_size)
        est = QualityEstimator.load(estimator) if estimator else None
        if source.is_dir():
            scorer = QualityScorer(pipe.embedder, est) if est else None
            first = output.with_name(output.stem + ".partial.parquet") if baselines else output
            embed_folder(dataclasses.replace(pipe, scorer=scorer), source, first, select, overwrite=overwrite)
            if baselines:  # a second pass over our own file, then swap it in
                score_parquet(first, output, pipe.embedder, None, baselines, batch_size)
                first.unlink()
        else:
            score_parquet(source, output, pipe.embedder, est, baselines or (), batch_size)
        from faceforge.io.embeddings import read_embeddings
        table = read_embeddings(output)
        column = "quality" if est else f"quality_{baselines[0]}"
        if sheet:
            contact_sheet(output, sheet, column=column)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    q = np.asarray(table.column(column).to_numpy(zero_copy_only=False), dtype=float)
    res = {"output": str(output), "faces": len(q), "column": column,
           "quality": {"min": float(q.min()), "median": float(np.median(q)), "max": float(q.max())} if len(q) else {},
           "sheet": str(sheet) if sheet else None}
    if as_json:
        _emit(res, True)
    else:
        out.print(f"{res['faces']} faces scored → {output} ({column}: " +
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


@curate_app.command("filter")
def curate_filter(embeddings: Path = typer.Argument(..., help="labelled embeddings .parquet (identity column)"),
                  output: Path = typer.Option(..., "-o", "--output", help="folder for clean.txt, noise.txt, ..."),
                  method: str = typer.Option("label_propagation", "--method",
                                             help="label_propagation | leiden | dbscan | elbow-dbscan"),
                  quality_column: Optional[str] = typer.Option(None, "--quality-column",
                                                               help="raw quality in [0, 1], e.g. quality_raw"),
                  threshold: Optional[float] = typer.Option(None, "--threshold",
                                                            help="fixed cosine without quality (default: the model's)"),
                  margin: Optional[float] = typer.Option(None, "--margin", help="edge i–j iff cos ≥ min(q_i, q_j) − "
                                                         "margin (default: the model's, else 0.1 scaled to its cosines)"),
                  eps: float = typer.Option(0.3, "--eps", help="DBSCAN cosine eps"),
                  links: bool = typer.Option(False, "--links", help="also a symlink tree of the clean set"),
                  report: bool = typer.Option(False, "--report", help="also report/index.html for review"),
                  report_limit: int = typer.Option(100, "--report-limit", min=1, help="identities in the report"),
                  seed: int = typer.Option(0, "--seed"),
                  overwrite: bool = OverwriteOpt, as_json: bool = JsonOpt) -> None:
    """Clean a labelled set per identity: keep each identity's main community, flag the rest."""
    claim(as_json, overwrite, output / "summary.json")
    from faceforge.curate.workflow import filter_parquet
    try:
        res = filter_parquet(embeddings, output, method, quality_column, threshold, margin, eps, links, report,
                             report_limit, seed)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit({k: v for k, v in res.items() if k != "per_identity"}, True)
    else:
        out.print(f"{res['faces']} faces, {res['identities']} identities: kept {res['kept']}, flagged {res['noise']} "
                  f"in {res['identities_with_noise']} identities → {res['clean_list']}, {res['noise_list']}"
                  + (f"; report {res['report']}" if "report" in res else ""))


@curate_app.command("cluster")
def curate_cluster(embeddings: Path = typer.Argument(..., help="embeddings .parquet"),
                   output: Path = typer.Option(..., "-o", "--output", help="folder for clusters.parquet, lists"),
                   method: str = typer.Option("leiden", "--method",
                                              help="leiden | infomap | components | dbscan | hdbscan | agglomerative"),
                   cutoff: Optional[float] = typer.Option(None, "--cutoff", help="cosine cut-off (default: the model's "
                                                                                 "measured one, if any)"),
                   k: int = typer.Option(10, "--k", min=1, help="neighbours per face in the kNN graph"),
                   index: str = typer.Option("auto", "--index", help="auto | flat | hnsw | ivf"),
                   add_to: Optional[Path] = typer.Option(None, "--add-to", help="an earlier clusters.parquet: "
                                                                                "join its clusters or open new ones"),
                   links: bool = typer.Option(False, "--links", help="also a symlink tree per cluster"),
                   device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N (FAISS on GPU)"),
                   seed: int = typer.Option(0, "--seed"),
                   overwrite: bool = OverwriteOpt, as_json: bool = JsonOpt) -> None:
    """Group unlabelled faces by person (identity labels, if present, only score the result)."""
    claim(as_json, overwrite, output / "summary.json")
    from faceforge.curate.workflow import cluster_parquet
    try:
        res = cluster_parquet(embeddings, output, method, cutoff, k, index, device, add_to, links, seed)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit(res, True)
    else:
        line = (f"{res['faces']} faces → {res['clusters']} clusters (largest {res['largest']}), "
                f"{res['unclustered']} unclustered → {res['output']}")
        if "scored_against_identity" in res:
            s = res["scored_against_identity"]
            line += f"; vs identity: pairwise F {s['pairwise']['f']:.4f}, BCubed F {s['bcubed']['f']:.4f}, NMI {s['nmi']:.4f}"
        out.print(line)


if __name__ == "__main__":  # after every command is registered
    app()
