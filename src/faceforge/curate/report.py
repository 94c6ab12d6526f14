"""A static HTML review of a per-identity filtering: for each identity the main community and
the outliers as thumbnail grids (outliers bordered red), quality and path on hover, a t-SNE
map of the identity's faces (perplexity ≈ 3), and the summary counts. Self-contained folder:
index.html, thumbs/, tsne/ — open it from disk, no server."""
from __future__ import annotations

import html
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa

from faceforge.core.errors import FaceForgeError
from faceforge.core.extras import require
from faceforge.core.files import atomic_write_bytes, atomic_write_text
from faceforge.core.progress import progress
from faceforge.curate.graph_filter import KEPT, LOOK, OTHER
from faceforge.io.images import load_image
from faceforge.vision.align import align_face

THUMB = 112
CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222}
table.summary td{padding:2px 12px}
section{border-top:1px solid #ccc;margin-top:24px;padding-top:8px}
.row{display:flex;gap:24px;align-items:flex-start}
.grid{display:flex;flex-wrap:wrap;gap:4px;max-width:760px}
.grid img{width:72px;height:72px;border:3px solid #3a3;border-radius:3px}
.grid.noise img{border-color:#d00}
.tsne img{width:300px}
h3{font-size:14px;margin:8px 0 4px}"""


def _thumb(row: dict) -> tuple[bytes, str]:
    """JPEG bytes of the aligned face (or the whole image without landmarks) and a note."""
    try:
        img = load_image(row["path"])
    except FaceForgeError as exc:
        grey = np.full((THUMB, THUMB, 3), 128, np.uint8)
        return cv2.imencode(".jpg", grey)[1].tobytes(), f"unreadable: {exc}"
    lm = row.get("landmarks")
    crop = (align_face(img, np.asarray(lm, np.float32).reshape(5, 2), "arcface", THUMB) if lm is not None
            else cv2.resize(img, (THUMB, THUMB), interpolation=cv2.INTER_AREA))
    return cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))[1].tobytes(), ""


def _tsne_png(emb: np.ndarray, community: np.ndarray, main: np.ndarray, out: Path, seed: int) -> bool:
    """2-d t-SNE of one identity (perplexity 3, less for tiny identities); False when < 3 faces."""
    if len(emb) < 3:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    manifold = require("sklearn.manifold", "curate", "the report's t-SNE plots")
    xy = manifold.TSNE(2, perplexity=min(3.0, len(emb) - 1.0), init="pca", random_state=seed,
              metric="cosine").fit_transform(emb)
    fig, ax = plt.subplots(figsize=(3.2, 3.2), dpi=100)
    for c in np.unique(community):
        m = community == c
        kept = bool(main[m].all())
        ax.scatter(xy[m, 0], xy[m, 1], s=28, marker="o" if kept else ("^" if c < 0 else "x"),
                   c="#3a3" if kept else "#d00", label="isolated" if c < 0 else f"community {c}")
    ax.set_xticks([]), ax.set_yticks([])
    ax.legend(fontsize=6, loc="best")
    fig.tight_layout()
    fig.savefig(out, format="png")
    plt.close(fig)
    return True


def _grid(rows: list[int], names: list[str], notes: list[str], noise: bool) -> str:
    imgs = "".join(f'<img src="thumbs/{i}.jpg" alt="{html.escape(Path(names[i]).name)}" '
                   f'title="{html.escape(notes[i])}">' for i in rows)
    return f'<div class="grid{" noise" if noise else ""}">{imgs}</div>'


def filter_report(table: pa.Table, embeddings: np.ndarray, groups: dict[str, np.ndarray], community: np.ndarray,
                  outcome: np.ndarray, group_score: np.ndarray, quality: np.ndarray | None, out_dir: str | Path,
                  limit: int = 100, seed: int = 0, show_progress: bool | None = None) -> Path:
    """Write out_dir/index.html: per identity its three groups — kept (main community), same
    person with a different look (kept, for review) and other people (flagged) — each face
    with its community and its group's template score against the main community.
    `groups`: each identity's rows (graph_filter.identity_rows). Identities with flagged or
    different-look faces come first (most first), at most `limit`; the summary counts cover
    every identity."""
    out = Path(out_dir)
    (out / "thumbs").mkdir(parents=True, exist_ok=True)
    (out / "tsne").mkdir(exist_ok=True)
    names = table.column("path").to_pylist()
    lms = table.column("landmarks").to_pylist() if "landmarks" in table.column_names else [None] * len(names)
    keep = outcome != OTHER
    outliers = {n: int((outcome[rows] != KEPT).sum()) for n, rows in groups.items()}
    shown = sorted(groups, key=lambda n: (-outliers[n], n))[:limit]
    todo = np.concatenate([groups[n] for n in shown]) if shown else np.zeros(0, np.int64)
    notes = [""] * len(names)
    for i in progress(todo.tolist(), "report thumbnails", enabled=show_progress):
        jpg, problem = _thumb({"path": names[i], "landmarks": lms[i]})
        atomic_write_bytes(out / "thumbs" / f"{i}.jpg", jpg)
        q = f" · quality {quality[i]:.3f}" if quality is not None else ""
        g = f" · template score {group_score[i]:.3f}" if np.isfinite(group_score[i]) else ""
        notes[i] = f"{names[i]}{q} · community {community[i]}{g}" + (f" · {problem}" if problem else "")
    sections = []
    for k, name in enumerate(shown):
        rows = groups[name]
        parts = [rows[outcome[rows] == o] for o in (KEPT, LOOK, OTHER)]
        has_plot = _tsne_png(embeddings[rows], community[rows], keep[rows], out / "tsne" / f"{k}.png", seed)
        plot = f'<div class="tsne"><h3>t-SNE</h3><img src="tsne/{k}.png" alt="t-SNE of {html.escape(name)}"></div>'
        grids = "".join(
            f'<h3>{title} ({len(part)}){_score_range(group_score[part])}</h3>'
            f'{_grid(part.tolist(), names, notes, o == OTHER)}'
            for o, title, part in zip((KEPT, LOOK, OTHER), ("Kept: main community", "Kept: same person, "
                                                             "different look", "Flagged: other person"), parts)
            if o == KEPT or len(part))
        sections.append(
            f'<section id="id-{k}"><h2>{html.escape(name)} — {len(rows)} images, {len(parts[0])} in the main '
            f'community, {len(parts[1])} different look, {len(parts[2])} flagged</h2><div class="row"><div>'
            f'{grids}</div>{plot if has_plot else ""}</div></section>')
    n_noise_ids = sum(int((outcome[rows] == OTHER).sum()) > 0 for rows in groups.values())
    summary = (f'<table class="summary"><tr><td>faces</td><td>{len(names)}</td></tr>'
               f'<tr><td>identities</td><td>{len(groups)}</td></tr>'
               f'<tr><td>kept, main community</td><td>{int((outcome == KEPT).sum())}</td></tr>'
               f'<tr><td>kept, different look</td><td>{int((outcome == LOOK).sum())}</td></tr>'
               f'<tr><td>flagged, other person</td><td>{int((outcome == OTHER).sum())}</td></tr>'
               f'<tr><td>identities with flagged faces</td><td>{n_noise_ids}</td></tr>'
               f'<tr><td>identities shown</td><td>{len(shown)}</td></tr></table>')
    page = (f'<!doctype html><html><head><meta charset="utf-8"><title>FaceForge curation review</title>'
            f'<style>{CSS}</style></head><body><h1>Curation review</h1>{summary}{"".join(sections)}</body></html>')
    atomic_write_text(out / "index.html", page)
    return out / "index.html"


def _score_range(scores: np.ndarray) -> str:
    """' · template score a–b' over a group's faces (nothing for the main community)."""
    s = scores[np.isfinite(scores)]
    if not len(s):
        return ""
    lo, hi = float(s.min()), float(s.max())
    return f" · template score {lo:.3f}" if np.isclose(lo, hi) else f" · template score {lo:.3f}–{hi:.3f}"
