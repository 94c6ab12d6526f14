"""What `faceforge eval lfw|verify|ijbc|ident|topk|erc` and `faceforge similarity` do, as
functions: read (or first embed) the inputs, assemble each protocol's result and write its
metrics.json, CSV and PNG files into an output folder. Every function returns the result
dict the command prints.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from faceforge.core.errors import FaceForgeError
from faceforge.core.files import atomic_write, atomic_write_json
from faceforge.evaluate.erc import error_vs_reject
from faceforge.evaluate.identification import identification_with_distractors, open_set_identification, topk_decisions
from faceforge.evaluate.ijbc import MODES, IjbProtocol, embed_ijb, evaluate_ijb, read_ijb
from faceforge.evaluate.inputs import EmbeddingSet, PairIndex, load_embedding_set, match_pairs, read_pair_file
from faceforge.evaluate.lfw import evaluate_lfw
from faceforge.evaluate.outputs import json_ready, write_tpr_table, write_verification
from faceforge.evaluate.plots import plot_cmc, plot_error_vs_reject, plot_precision_recall, plot_roc, plot_similarity
from faceforge.evaluate.verification import DEFAULT_FPRS, all_pairs_scores, verification_report
from faceforge.io.images import list_images
from faceforge.models.embedders import Embedder
from faceforge.pipeline import FacePipeline, FaceRecord, Select, embed_folder

PipelineSource = FacePipeline | Callable[[], FacePipeline]  # a factory builds it only when a folder needs it
EMBEDDING_CACHE = ("embeddings-*",)  # load_embeddings' files in an output folder, which may already hold them


def _built(source: PipelineSource | None, what: Path) -> FacePipeline:
    if source is None:
        raise FaceForgeError("a folder of images needs a pipeline to embed it", what)
    return source if isinstance(source, FacePipeline) else source()


def load_embeddings(source: str | Path, out_dir: str | Path | None = None, pipeline: PipelineSource | None = None,
                    notify: Callable[[str], None] | None = None) -> EmbeddingSet:
    """An embeddings Parquet as given, or a folder embedded first (one central face per image)
    into OUT/embeddings-<folder>.parquet (a new temporary folder without OUT), resumable: a
    rerun into the same OUT embeds only what is new. `notify` hears what was embedded."""
    source = Path(source)
    if source.is_dir():
        target = Path(out_dir or tempfile.mkdtemp(prefix="faceforge-")) / f"embeddings-{source.name}.parquet"
        res = embed_folder(_built(pipeline, source), source, target, select="central")
        if notify is not None:
            notify(f"embedded {res['faces_written']} new faces from {source} → {target} ({res['skipped']} skipped)")
        source = target
    return load_embedding_set(source)


def scored_pairs(emb: EmbeddingSet, pairs: str | Path, drop_missing: bool = False,
                 hint: str = "") -> tuple[PairIndex, np.ndarray]:
    """(matched pair rows, their cosines) for a pair list; images without an embedding are
    an error (ending with `hint`) unless their pairs may be dropped."""
    idx = match_pairs(emb, read_pair_file(pairs))
    if idx.missing and not drop_missing:
        raise FaceForgeError(f"{len(idx.missing)} images in the pair list have no embedding "
                             f"(e.g. {idx.missing[0]}){hint}", pairs)
    return idx, np.einsum("ij,ij->i", emb.vectors[idx.a], emb.vectors[idx.b])


def run_lfw(root: str | Path, pipeline: FacePipeline, folds: int | None = None, json_out: str | Path | None = None,
            roc_png: str | Path | None = None, show_progress: bool = True) -> dict:
    """LFW 10-fold verification (faceforge.evaluate.lfw), the result also written to
    `json_out` and its ROC plotted to `roc_png` when given."""
    res = evaluate_lfw(root, pipeline, folds=folds, show_progress=show_progress)
    raw = res.pop("_raw")
    if roc_png:
        plot_roc({f"{res['model']} ({res['detector']})": raw["roc"]}, roc_png, "LFW pairs")
    if json_out:
        atomic_write_json(json_out, res)
    return res


def run_verification(emb: EmbeddingSet, pairs: str | Path | None = None, drop_missing: bool = False,
                     fprs: Sequence[float] | None = None, name: str | None = None,
                     out_dir: str | Path | None = None) -> dict:
    """1:1 verification of every pair of images (pairs=None) or of a pair list: TPR at FPR
    (default DEFAULT_FPRS) with thresholds, EER, AUC and score distributions; with out_dir
    also metrics.json, tpr_at_fpr.csv, roc.csv, roc.png and scores.png."""
    if pairs is None:
        scores, same = all_pairs_scores(emb.vectors, emb.identities)
        extra: dict = {"protocol": "all pairs"}
    else:
        idx, scores = scored_pairs(emb, pairs, drop_missing, "; --on-missing drop leaves those pairs out")
        same = idx.same
        extra = {"protocol": f"pair list {pairs}", "pairs_dropped_missing_image": len(idx.missing)}
    report, curve = verification_report(scores, same, tuple(fprs) if fprs else DEFAULT_FPRS)
    name = name or emb.source.stem
    report = {"name": name, "embeddings": str(emb.source), **extra, **report}
    if out_dir:
        write_verification(out_dir, name, report, curve)
    return report


def ijb_features(protocol: IjbProtocol, embedder: Callable[[], Embedder], features: str | Path | None = None,
                 batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, str]:
    """(raw, raw_flip, source name) of an IJB protocol's faces: read from the `features`
    .npz when it exists, else embedded (embedder() builds the network only then) and
    written there when a path is given."""
    if features is not None and Path(features).is_file():
        with np.load(features, allow_pickle=False) as z:
            return z["raw"], z["raw_flip"], str(features)
    emb = embedder()
    raw, raw_flip = embed_ijb(protocol, emb, batch_size)
    if features is not None:
        with atomic_write(features, "wb") as fh:
            np.savez(fh, raw=raw, raw_flip=raw_flip)
    return raw, raw_flip, emb.name


def run_ijb(root: str | Path, embedder: Callable[[], Embedder], target: str = "IJBC",
            modes: Sequence[str] | None = None, fprs: Sequence[float] | None = None,
            features: str | Path | None = None, batch_size: int = 64, out_dir: str | Path | None = None) -> dict:
    """IJB-B/C 1:1 template verification in the given modes (default all 8); its `name` is
    "<target> <model or features file>". With out_dir also metrics.json, one
    tpr_at_fpr_<mode>.csv per mode and roc.png."""
    proto = read_ijb(root, target)
    raw, raw_flip, model_name = ijb_features(proto, embedder, features, batch_size)
    res, curves = evaluate_ijb(proto, raw, raw_flip, tuple(modes) if modes else MODES,
                               tuple(fprs) if fprs else DEFAULT_FPRS)
    res = {"name": f"{target} {model_name}", **res}
    if out_dir:
        out_dir = Path(out_dir)
        atomic_write_json(out_dir / "metrics.json", json_ready(res))
        for m, r in res["modes"].items():
            write_tpr_table(out_dir / f"tpr_at_fpr_{m}.csv", r["tpr_at_fpr"])
        plot_roc(curves, out_dir / "roc.png", f"{target} 1:1: {model_name}")
    return res


def run_identification(probes: EmbeddingSet, gallery: EmbeddingSet | None = None,
                       distractors: EmbeddingSet | None = None, fpirs: Sequence[float] | None = None,
                       max_rank: int = 20, out_dir: str | Path | None = None) -> dict:
    """Open-set 1:N against a gallery (TPIR at FPIR, default 1e-3…1e-1; the CMC at ranks 1,
    5, 10 and max_rank, its curve to max_rank) and/or the identification rate among
    distractors (at FPR, default 0.5…1e-3). With out_dir also metrics.json and cmc.png."""
    if gallery is None and distractors is None:
        raise FaceForgeError("nothing to identify against: give a gallery, distractors or both")
    res: dict = {"probes": str(probes.source)}
    if gallery is not None:
        # one pass gives every rank: the table shows 1, 5, 10 and max_rank, the curve 1..max_rank
        o = open_set_identification(gallery.vectors, gallery.identities, probes.vectors, probes.identities,
                                    tuple(fpirs) if fpirs else (1e-3, 1e-2, 1e-1),
                                    ranks=range(1, max(max_rank, 10) + 1))
        o["cmc_curve"] = [o["cmc"][str(r)] for r in range(1, max_rank + 1)]
        o["cmc"] = {str(r): o["cmc"][str(r)] for r in (1, 5, 10, max_rank)}
        res["open_set"] = o
    if distractors is not None:
        res["with_distractors"] = identification_with_distractors(
            probes.vectors, probes.identities, distractors.vectors,
            tuple(fpirs) if fpirs else (0.5, 0.3, 0.1, 1e-2, 1e-3))
    if out_dir:
        atomic_write_json(Path(out_dir) / "metrics.json", json_ready(res))
        if "open_set" in res:
            plot_cmc({probes.source.stem: np.array(res["open_set"]["cmc_curve"])}, Path(out_dir) / "cmc.png")
    return res


def run_topk(queries: EmbeddingSet, gallery: EmbeddingSet, ks: Sequence[int] | None = None,
             threshold: float | None = None, target_precision: float = 0.99,
             out_dir: str | Path | None = None) -> dict:
    """Top-K majority-vote decisions per K (default 1 and 3): precision and recall at the
    threshold reaching `target_precision` and, if given, at `threshold`. With out_dir also
    metrics.json and precision_recall.png."""
    res: dict = {"target_precision": target_precision, "k": {}}
    curves = {}
    for k in ks or (1, 3):
        dec = topk_decisions(gallery.vectors, gallery.identities, queries.vectors, queries.identities, k)
        entry = {"at_target_precision": dec.threshold_for_precision(target_precision)}
        if threshold is not None:
            entry["at_threshold"] = dec.at(threshold)
        res["k"][str(k)] = entry
        curves[f"top-{k}"] = dec
    if out_dir:
        atomic_write_json(Path(out_dir) / "metrics.json", json_ready(res))
        plot_precision_recall(curves, Path(out_dir) / "precision_recall.png")
    return res


def run_erc(emb: EmbeddingSet, qualities: Sequence[str], pairs: str | Path | None = None,
            fmrs: Sequence[float] | None = None, out_dir: str | Path | None = None) -> dict:
    """Error versus reject for each per-image quality column: FNMR at the thresholds fixing
    each FMR (default 1e-3 and 1e-4) as the pairs whose worse image scores lowest are
    discarded, with pAUC. Every pair (pairs=None) or a pair list. With out_dir also
    metrics.json and erc.png."""
    res: dict = {"embeddings": str(emb.source), "qualities": {}}
    qs = {name: emb.column(name) for name in qualities}
    if pairs is None:
        scores, same, qmins = all_pairs_scores(emb.vectors, emb.identities, quality=list(qs.values()))
    else:
        idx, scores = scored_pairs(emb, pairs)
        same = idx.same
        qmins = [np.minimum(v[idx.a], v[idx.b]) for v in qs.values()]
    for name, qm in zip(qs, qmins):
        res["qualities"][name] = error_vs_reject(scores, same, qm, qm, tuple(fmrs) if fmrs else (1e-3, 1e-4))
    if out_dir:
        atomic_write_json(Path(out_dir) / "metrics.json", json_ready(res))
        plot_error_vs_reject(res["qualities"], Path(out_dir) / "erc.png")
    return res


def similarity_matrix(folder: str | Path, pipeline: PipelineSource, output: str | Path,
                      select: Select = "all") -> dict:
    """Cosine similarity of every face in a folder (or of one image), sorted by file name,
    plotted to `output`. Labels are paths under the folder, `#k` marking a file's further
    faces; files without a usable face are listed as skipped."""
    folder = Path(folder)
    files = sorted(list_images(folder), key=lambda p: str(p.relative_to(folder) if folder.is_dir() else p))
    pipe = _built(pipeline, folder)
    labels, embs, skips = [], [], []
    for rec in pipe.process_files(files, select=select):
        if isinstance(rec, FaceRecord):
            name = str(Path(rec.path).relative_to(folder)) if folder.is_dir() else Path(rec.path).name
            labels.append(name if rec.face_index == 0 else f"{name}#{rec.face_index}")
            embs.append(rec.embedding)
        else:
            skips.append(rec.to_dict())
    if not embs:
        raise FaceForgeError("no faces found in any image", folder)
    e = np.stack(embs)
    matrix = e @ e.T
    plot_similarity(matrix, labels, output, f"{pipe.embedder.name}: cosine similarity")
    return {"output": str(output), "labels": labels, "matrix": np.round(matrix, 4).tolist(), "skipped": skips}
