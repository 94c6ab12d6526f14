"""`faceforge eval lfw|verify|ijbc|ident|topk|erc|reid|compare`: the evaluation protocols."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Optional

import typer
from rich.table import Table

from faceforge.cli.common import (BatchOpt, DetectorOpt, DeviceOpt, JsonOpt, ModelOpt, OverwriteOpt, _emit, _fail,
                                  _pipeline, claim, err, out)
from faceforge.core.errors import FaceForgeError
from faceforge.evaluate.compare import percent

if TYPE_CHECKING:
    from faceforge.evaluate.inputs import EmbeddingSet

eval_app = typer.Typer(help="Evaluation protocols.", no_args_is_help=True)

FprOpt = typer.Option(None, "--fpr", help="target FPRs (repeatable; default 1e-6 … 1e-1)")
OutOpt = typer.Option(None, "--out", "-o", help="folder for metrics.json, CSV and PNG files")


def _numbers(title: str, columns: list[str], rows: Iterable[Iterable[str]], label: str | None = None) -> None:
    """Print a table of right-aligned numbers, after a left-aligned `label` column if given."""
    tab = Table(title=title)
    if label:
        tab.add_column(label)
    for col in columns:
        tab.add_column(col, justify="right")
    for row in rows:
        tab.add_row(*row)
    out.print(tab)


def _loader(out_dir: Optional[Path], detector: str, model: str, device: str,
            batch_size: int) -> Callable[[Path], EmbeddingSet]:
    """Embeddings from a Parquet, or from a folder embedded first into --out (resumable)."""
    from faceforge.evaluate.workflow import load_embeddings
    return lambda source: load_embeddings(source, out_dir, lambda: _pipeline(detector, model, device, batch_size),
                                          err.print)


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
    from faceforge.evaluate.workflow import run_lfw
    try:
        res = run_lfw(root or lfw_dir(), _pipeline(detector, model, device, batch_size, flip), folds, json_out,
                      roc_png, show_progress=sys.stderr.isatty())
    except FaceForgeError as exc:
        _fail(exc, False)
    tab = Table(title=f"LFW - {res['model']} + {res['detector']}{' + flip' if res['flip'] else ''}")
    for col in ("accuracy", "best thr", "TPR@1e-3", "TPR@1e-2", "TPR@1e-1", "no face", "ms/img"):
        tab.add_column(col)
    t = res["tpr_at_fpr"]
    tab.add_row(f"{100 * res['accuracy_mean']:.2f} ± {100 * res['accuracy_std']:.2f} %",
                f"{res['best_threshold_all_pairs']:.4f}",
                *(f"{100 * t[k]['tpr']:.2f}" for k in ("0.001", "0.01", "0.1")),
                str(res["no_face_found"]), str(res["ms_per_image"]))
    (err if json_out is None else out).print(tab)


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
    from faceforge.evaluate.outputs import json_ready
    from faceforge.evaluate.workflow import EMBEDDING_CACHE, run_verification
    claim(as_json, overwrite, folder=out_dir, ignore=EMBEDDING_CACHE)
    try:
        emb = _loader(out_dir, detector, model, device, batch_size)(embeddings)
        report = run_verification(emb, pairs, on_missing == "drop", fpr, name, out_dir)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    if as_json:
        report.pop("distributions")
        _emit(json_ready(report), True)
    else:
        t = report["tpr_at_fpr"]
        _numbers(f"{report['name']}: {report['pairs']:,} pairs ({report['positives']:,} genuine)",
                 [f"TPR@{k}" for k in t] + ["EER %", "AUC"],
                 [[*(percent(v["tpr"]) for v in t.values()), f"{100 * report['eer']['eer']:.3f}", f"{report['auc']:.5f}"]])
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
    from faceforge.evaluate.outputs import json_ready
    from faceforge.evaluate.workflow import EMBEDDING_CACHE, run_ijb
    from faceforge.models.embedders import create_embedder
    claim(as_json, overwrite, folder=out_dir, ignore=EMBEDDING_CACHE)
    try:
        res = run_ijb(root, lambda: create_embedder(model, device=device, batch_size=batch_size), target, mode, fpr,
                      features, batch_size, out_dir)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit(json_ready(res), True)
        return
    keys = list(next(iter(res["modes"].values()))["tpr_at_fpr"])
    _numbers(f"{target} 1:1, {res['pairs']:,} template pairs: {res['name'].removeprefix(target + ' ')}",
             [f"TPR@{k}" for k in keys], ([m, *(percent(r["tpr_at_fpr"][k]["tpr"]) for k in keys)]
                                          for m, r in res["modes"].items()), label="mode")


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
    from faceforge.evaluate.outputs import json_ready
    from faceforge.evaluate.workflow import EMBEDDING_CACHE, run_identification
    claim(as_json, overwrite, folder=out_dir, ignore=EMBEDDING_CACHE)
    if gallery is None and distractors is None:  # before any folder is embedded
        _fail(FaceForgeError("give --gallery (open-set 1:N), --distractors (rate with distractors) or both"), as_json)
    try:
        load = _loader(out_dir, detector, model, device, batch_size)
        q = load(probes)
        g = load(gallery) if gallery is not None else None
        d = load(distractors) if distractors is not None else None
        res = run_identification(q, g, d, fpir, max_rank, out_dir)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit(json_ready(res), True)
        return
    if "open_set" in res:
        o = res["open_set"]
        _numbers(f"open-set 1:N: {o['mated']} mated / {o['non_mated']} non-mated probes",
                 [f"TPIR@FPIR={k}" for k in o["tpir_at_fpir"]] + [f"rank-{r}" for r in o["cmc"]],
                 [[*(percent(v["tpir"]) for v in o["tpir_at_fpir"].values()), *(percent(v) for v in o["cmc"].values())]])
    if "with_distractors" in res:
        _numbers("identification rate with distractors", ["FPR", "threshold", "TPR"],
                 ([k, f"{v['threshold']:.4f}", f"{100 * v['tpr']:.2f}"] for k, v in res["with_distractors"].items()))


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
    from faceforge.evaluate.outputs import json_ready
    from faceforge.evaluate.workflow import EMBEDDING_CACHE, run_topk
    claim(as_json, overwrite, folder=out_dir, ignore=EMBEDDING_CACHE)
    try:
        load = _loader(out_dir, detector, model, device, batch_size)
        q, g = load(queries), load(gallery)
        res = run_topk(q, g, k, threshold, target_precision, out_dir)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit(json_ready(res), True)
        return
    _numbers(f"top-K decisions, {len(q.paths)} queries, gallery {len(g.paths)}",
             ["K", "rule", "threshold", "accepted", "precision %", "recall %"],
             ([kk, rule.replace("_", " "), f"{r['threshold']:.4f}", str(r["accepted"]), percent(r["precision"]),
               f"{100 * r['recall']:.2f}"] for kk, entry in res["k"].items() for rule, r in entry.items()))


@eval_app.command("erc")
def eval_erc(embeddings: Path = typer.Argument(..., help="embeddings .parquet with a per-image quality column"),
             quality: list[str] = typer.Option(["det_score"], "--quality", help="quality column(s) to compare "
                                               "(repeatable), e.g. quality, det_score"),
             pairs: Optional[Path] = typer.Option(None, "--pairs", help="pair list; default every pair"),
             fmr: Optional[list[float]] = typer.Option(None, "--fmr", help="FMRs fixing the threshold "
                                                       "(repeatable; default 1e-3 and 1e-4)"),
             out_dir: Optional[Path] = OutOpt, overwrite: bool = OverwriteOpt, as_json: bool = JsonOpt) -> None:
    """Error versus reject: FNMR as the lowest-quality pairs are discarded, with pAUC."""
    from faceforge.evaluate.inputs import load_embedding_set
    from faceforge.evaluate.outputs import json_ready
    from faceforge.evaluate.workflow import EMBEDDING_CACHE, run_erc
    claim(as_json, overwrite, folder=out_dir, ignore=EMBEDDING_CACHE)
    try:
        res = run_erc(load_embedding_set(embeddings), quality, pairs, fmr, out_dir)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit(json_ready(res), True)
        return
    rows = []
    for name, r in res["qualities"].items():
        fr = r["fractions"]
        i10 = min(range(len(fr)), key=lambda i: abs(fr[i] - 0.1))
        rows += [[name, f, f"{c['fnmr'][0]:.4f}", f"{c['fnmr'][i10]:.4f}", f"{c['pauc_20']:.5f}", f"{c['pauc_100']:.5f}"]
                 for f, c in r["curves"].items()]
    _numbers("error versus reject (FNMR at a fixed FMR threshold; lower pAUC is better)",
             ["quality", "FMR", "FNMR all", "FNMR −10 %", "pAUC 20 %", "pAUC 100 %"], rows)


@eval_app.command("reid")
def eval_reid(model: str = typer.Argument(..., help="a body model exported from a `task: reid` run (.safetensors)"),
              test: Path = typer.Option(..., "--test", help="test people: <root>/<person>/<image>"),
              train: Optional[Path] = typer.Option(None, "--train", help="training people: the pair-accuracy "
                                                   "threshold is chosen on their cross-camera pairs"),
              camera: str = typer.Option("cuhk03", "--camera", help="how file names give the camera: "
                                         "cuhk03 | market1501"),
              query_camera: Optional[int] = typer.Option(None, "--query-camera", help="this camera's images are "
                                                         "the queries (default: the lowest camera id)"),
              rerank: bool = typer.Option(False, "--rerank", help="also report k-reciprocal re-ranking"),
              flip: bool = typer.Option(False, "--flip", help="mean of the image's and its mirror's embedding"),
              device: str = DeviceOpt, batch_size: int = BatchOpt, out_dir: Optional[Path] = OutOpt,
              overwrite: bool = OverwriteOpt, as_json: bool = JsonOpt) -> None:
    """Person re-id: cross-camera rank-1/5/10 and mAP, pair accuracy, CMC plot and a retrieval sheet."""
    claim(as_json, overwrite, folder=out_dir)
    from faceforge.evaluate.bodies import evaluate_reid
    from faceforge.models.embedders import create_embedder
    try:
        embedder = create_embedder(model, device=device, flip=flip, batch_size=batch_size)
        res = evaluate_reid(embedder, test, train, camera, query_camera, rerank, out_dir,
                            show_progress=sys.stderr.isatty())
    except FaceForgeError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit(res, True)
        return
    rows = [["as ranked", res["ranking"]]] + ([["re-ranked", res["reranked"]]] if rerank else [])
    _numbers(f"{res['model']} on {res['people']} people, {res['images']} images ({res['protocol']})",
             ["rank-1", "rank-5", "rank-10", "mAP"],
             ([name, *(f"{100 * r[k]:.2f}" for k in ("rank1", "rank5", "rank10", "mAP"))] for name, r in rows),
             label="")
    if "pair_accuracy" in res:
        p = res["pair_accuracy"]
        out.print(f"pair accuracy {100 * p['accuracy']:.2f} % on {p['pairs']} cross-camera pairs "
                  f"(threshold {p['threshold']:.4f} from the training people)")
    if res["skipped"]:
        err.print(f"{len(res['skipped'])} unusable files skipped (listed in --json)")


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
        _numbers("TPR (%) at FPR", cols, ([n, *(percent(v) for v in vals)] for n, vals in rows), label="method")
