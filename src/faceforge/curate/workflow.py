"""Curation of an embeddings Parquet into an output folder; the Parquet and the images are only
read. `filter_parquet` cleans a labelled set per identity, `cluster_parquet` groups unlabelled
faces (optionally adding them to an earlier clustering).

Output folder, filtering: clean.txt, noise.txt (one face key per line: the path, `path#k` for
the k-th extra face of a file), communities.parquet, summary.json, optionally a symlink tree of
the clean set (links/<identity>/...) and the review report (report/index.html).
Clustering: clusters.parquet (the input rows with a `cluster` column), clusters/<NNNNN>.txt,
unclustered.txt, summary.json, optionally links/<NNNNN>/....
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from faceforge.core.errors import FaceForgeError
from faceforge.core.files import atomic_write_json, atomic_write_text, safe_filename, text_path
from faceforge.curate.cluster import assign_new, cluster_embeddings
from faceforge.curate.graph_filter import (
    LOOK, METHODS as GRAPH_METHODS, OTHER, OUTCOMES, REFERENCE_MARGIN, filter_dataset, identity_rows, scaled_margin,
)
from faceforge.curate.metrics import clustering_report
from faceforge.io.embeddings import _write_table, embedding_matrix, face_keys, read_embeddings
from faceforge.models.embedders import known_threshold

def _column(table: pa.Table, name: str, path: Path) -> np.ndarray:
    if name not in table.column_names:
        raise FaceForgeError(f"no {name!r} column", path)
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False))


def model_setting(table: pa.Table, which: str = "verify") -> float | None:
    """A measured cosine setting (a threshold key of the model card) of the one model named
    in the Parquet's `model` column, or None."""
    models = set(table.column("model").to_pylist()) if "model" in table.column_names else set()
    return known_threshold(next(iter(models)), which) if len(models) == 1 else None


def _models(table: pa.Table) -> list[str]:
    return sorted(map(str, set(table.column("model").to_pylist()))) if "model" in table.column_names else []


def _links(root: Path, groups: dict[str, list[str]]) -> None:
    """root/<group>/<file name> → the original image, made unique with a counter; never a copy.
    A group (an identity name) becomes one safe folder name, whatever characters it holds."""
    for group, paths in groups.items():
        d = root / safe_filename(group)
        d.mkdir(parents=True, exist_ok=True)
        seen: dict[str, int] = {}
        for p in paths:
            name = Path(p.split("#")[0]).name
            n = seen[name] = seen.get(name, 0) + 1
            link = d / (name if n == 1 else f"{Path(name).stem}_{n}{Path(name).suffix}")
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(text_path(p.split("#")[0]).resolve())


def _check_output(path: Path, out: Path) -> None:
    if out.resolve() == path.resolve() or path.resolve().is_relative_to(out.resolve()):
        raise FaceForgeError("the output folder would hold the input; choose another", out)


def filter_parquet(path: str | Path, out_dir: str | Path, method: str = "label_propagation",
                   quality_column: str | None = None, threshold: float | None = None, margin: float | None = None,
                   eps: float = 0.3, links: bool = False, report: bool = False, report_limit: int = 100,
                   seed: int = 0, rule: str = "reference", same_threshold: float | None = None,
                   edge: str = "min") -> dict:
    """Per-identity filtering of a labelled embeddings Parquet. Quality (graph methods) comes
    from `quality_column` (raw [0, 1] values, `quality_raw` of `faceforge quality score`);
    without it a fixed `threshold`. Defaults: the model's measured filtering threshold and margin
    where known (models.embedders), else its verification threshold and the reference's 0.1
    carried to its cosine scale (graph_filter.scaled_margin). Rule `community` keeps the groups
    outside the main community whose template matches it (`same_threshold`, default the model's
    verification threshold) as "different look", listed in looks.txt; only the rest is noise."""
    path, out = Path(path), Path(out_dir)
    _check_output(path, out)
    table = read_embeddings(path)
    if "identity" not in table.column_names or table.column("identity").null_count:
        raise FaceForgeError("every row needs an identity to filter per identity (use `curate cluster` "
                             "for unlabelled faces)", path)
    e = embedding_matrix(table)
    ids = _column(table, "identity", path).astype(str)
    quality = None
    if method in GRAPH_METHODS:
        if quality_column:
            quality = _column(table, quality_column, path).astype(np.float64)
            if np.nanmax(quality, initial=0.0) > 1.0:
                raise FaceForgeError(f"{quality_column!r} is not in [0, 1]: the graph rule compares quality with "
                                     "cosines; use `quality_raw` from `faceforge quality score`", path)
        elif threshold is None:
            threshold = model_setting(table, "filter") or model_setting(table, "verify")
            if threshold is None:
                raise FaceForgeError(f"no known threshold for model(s) {_models(table)}: give --threshold "
                                     "or a quality column", path)
        if margin is None:
            verify = model_setting(table, "verify")
            margin = model_setting(table, "filter_margin") or (
                scaled_margin(verify) if verify is not None else REFERENCE_MARGIN)
    if rule == "community" and same_threshold is None:
        same_threshold = model_setting(table, "verify")
        if same_threshold is None:
            raise FaceForgeError(f"no known same-person threshold for model(s) {_models(table)}: give "
                                 "--same-threshold", path)
    groups = identity_rows(ids)
    results = filter_dataset(e, ids, quality, margin, None if quality is not None else threshold, method, seed, eps,
                             rule, same_threshold, edge)
    community = np.empty(len(ids), np.int64)
    outcome = np.empty(len(ids), np.int64)
    group_score = np.full(len(ids), np.nan)
    for name, r in results.items():
        rows = groups[name]
        community[rows], outcome[rows], group_score[rows] = r.labels, r.outcome, r.group_score
    main = outcome != OTHER
    keys = face_keys(table)
    atomic_write_text(out / "clean.txt", "".join(k + "\n" for k, m in zip(keys, main) if m))
    atomic_write_text(out / "noise.txt", "".join(k + "\n" for k, m in zip(keys, main) if not m))
    atomic_write_text(out / "looks.txt", "".join(k + "\n" for k, o in zip(keys, outcome) if o == LOOK))
    cols = {"path": table.column("path"), "identity": pa.array(ids), "community": pa.array(community),
            "main": pa.array(main), "outcome": pa.array([OUTCOMES[o] for o in outcome]),
            "group_score": pa.array(group_score)}
    if "face_index" in table.column_names:
        cols["face_index"] = table.column("face_index")
    if quality is not None:
        cols["quality"] = pa.array(quality)
    _write_table(out / "communities.parquet", pa.table(cols))
    per_identity = {name: {"images": len(r.labels), "kept": int(r.keep.sum()),
                           "different_look": int((r.outcome == LOOK).sum()),
                           "communities": int(r.labels.max() + 1), "isolated": int((r.labels < 0).sum())}
                    for name, r in results.items()}
    summary = {"input": str(path), "method": method, "rule": rule, "edge": edge,
               "same_threshold": same_threshold, "margin": margin if method in GRAPH_METHODS else None,
               "quality_column": quality_column, "threshold": threshold,
               "eps": eps if method == "dbscan" else None, "faces": len(ids), "identities": len(results),
               "kept": int(main.sum()), "noise": int((~main).sum()), "different_look": int((outcome == LOOK).sum()),
               "looks_list": str(out / "looks.txt"),
               "identities_with_noise": sum(v["kept"] < v["images"] for v in per_identity.values()),
               "clean_list": str(out / "clean.txt"), "noise_list": str(out / "noise.txt"),
               "per_identity": per_identity}
    if links:
        _links(out / "links", {n: [keys[i] for i in rows if main[i]] for n, rows in groups.items()})
        summary["links"] = str(out / "links")
    if report:
        from faceforge.curate.report import filter_report
        summary["report"] = str(filter_report(table, e, groups, community, outcome, group_score, quality,
                                              out / "report", limit=report_limit, seed=seed))
    atomic_write_json(out / "summary.json", summary)
    return summary


def cluster_parquet(path: str | Path, out_dir: str | Path, method: str = "leiden", cutoff: float | None = None,
                    k: int = 10, index: str = "auto", device: str = "cpu", add_to: str | Path | None = None,
                    links: bool = False, seed: int = 0, nprobe: int = 16) -> dict:
    """Cluster the faces of an embeddings Parquet (labels, if any, are not used for it but
    scored against). With `add_to` (an earlier clusters.parquet), the new faces join its
    clusters or open new ones and the output holds both."""
    path, out = Path(path), Path(out_dir)
    _check_output(path, out)
    table = read_embeddings(path)
    e = embedding_matrix(table)
    if cutoff is None:
        cutoff = model_setting(table, "cluster")
        if cutoff is None:
            raise FaceForgeError(f"no measured clustering cut-off for model(s) {_models(table)}: give --cutoff "
                                 "(a verification threshold is too loose for a kNN graph over thousands of faces)",
                                 path)
    if add_to is not None:
        prev = read_embeddings(add_to)
        old_labels = _column(prev, "cluster", Path(add_to)).astype(np.int64)
        assigned = assign_new(embedding_matrix(prev), old_labels, e, cutoff, k, method, index, device, seed, nprobe)
        table = pa.concat_tables([prev.drop_columns(["cluster"]).select(table.column_names), table],
                                 promote_options="permissive")
        labels = np.concatenate([old_labels, assigned.labels])
    else:
        labels = cluster_embeddings(e, method, cutoff, k, index, device, seed=seed, nprobe=nprobe)
    out_table = table.append_column("cluster", pa.array(labels))
    _write_table(out / "clusters.parquet", out_table)
    keys = face_keys(table)
    groups: dict[str, list[str]] = {}
    for key, c in zip(keys, labels):
        groups.setdefault(f"{c:05d}" if c >= 0 else "unclustered", []).append(key)
    for g, members in groups.items():
        dest = out / "unclustered.txt" if g == "unclustered" else out / "clusters" / f"{g}.txt"
        atomic_write_text(dest, "".join(m + "\n" for m in members))
    sizes = np.bincount(labels[labels >= 0]) if (labels >= 0).any() else np.zeros(0, np.int64)
    summary = {"input": str(path), "added_to": str(add_to) if add_to else None, "method": method,
               "cutoff": cutoff, "k": k, "index": index, "faces": len(labels), "clusters": len(sizes),
               "largest": int(sizes.max()) if len(sizes) else 0, "unclustered": int((labels < 0).sum()),
               "output": str(out / "clusters.parquet")}
    if add_to is not None:
        summary["new_faces"] = int(len(assigned.labels))
        summary["joined_existing"] = int(((assigned.labels >= 0) & (assigned.labels < assigned.first_new_label)).sum())
        summary["new_clusters"] = int(len(np.unique(assigned.labels[assigned.labels >= assigned.first_new_label])))
    if "identity" in table.column_names and not table.column("identity").null_count:
        summary["scored_against_identity"] = clustering_report(_column(table, "identity", path).astype(str), labels)
    if links:
        _links(out / "links", {g: m for g, m in groups.items() if g != "unclustered"})
        summary["links"] = str(out / "links")
    atomic_write_json(out / "summary.json", summary)
    return summary
