"""`faceforge curate filter|cluster`: clean labelled sets, group unlabelled faces."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from faceforge.cli.common import JsonOpt, OverwriteOpt, _emit, _fail, claim, out
from faceforge.core.errors import FaceForgeError

curate_app = typer.Typer(help="Dataset curation: filter labelled faces, cluster unlabelled ones.",
                         no_args_is_help=True)

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
                  rule: str = typer.Option("reference", "--rule", help="reference: only the main community is "
                                           "kept | community: a group whose template matches the main one is "
                                           "kept as 'different look' (looks.txt), only the rest is noise"),
                  same_threshold: Optional[float] = typer.Option(None, "--same-threshold", help="--rule community: "
                                                                 "template cosine for 'same person' (default: "
                                                                 "the model's verification threshold)"),
                  edge: str = typer.Option("min", "--edge", help="min: cos ≥ min(q_i, q_j) − margin (the "
                                           "reference) | product: cos ≥ q_i·q_j − margin"),
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
                             report_limit, seed, rule, same_threshold, edge)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit({k: v for k, v in res.items() if k != "per_identity"}, True)
    else:
        looks = f" (of them {res['different_look']} a different look, → {res['looks_list']})" \
            if res["rule"] == "community" else ""
        out.print(f"{res['faces']} faces, {res['identities']} identities: kept {res['kept']}{looks}, flagged {res['noise']} "
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
                   nprobe: int = typer.Option(16, "--nprobe", min=1, help="ivf: inverted lists each search "
                                              "visits (more: nearer exact kNN, slower; auto uses ivf past 100k)"),
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
        res = cluster_parquet(embeddings, output, method, cutoff, k, index, device, add_to, links, seed, nprobe)
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
