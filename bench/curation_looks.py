"""Does curation remove other people, or the hardest pictures of the right person?

Data: every CelebA-subset identity with ≥ 5 images (identities with several looks; labels
believed clean) and every LFW identity with ≥ 10 images, embedded by yunet + sface (the
central face of each photo). Into each identity are planted intruders, 5 % or 20 % of the
resulting folder (at least one), of two kinds: `random` — photos of random other people of
the same dataset (easy) — and `lookalike` — photos of the other identity whose template is
nearest to this one's (hard).
Methods, each per identity, sface's settings (no quality: the fixed-threshold form of the
graph rule, t = 0.363, margin 0.1): label propagation with the reference rule (the largest
community, the rest is noise) and with the community rule (smaller communities and isolated
images kept as "different look" when their template reaches t); the same two rules after
DBSCAN (eps 0.3, the reference's); and the fixed threshold (an image is noise when its cosine
to the leave-one-out template of its folder is below t). The same-person threshold of the
community rule is also tuned on LFW (the largest with a false-removal rate ≤ 1 % there) and
that value reported on CelebA, and on CelebA the community rule's trade-off as that threshold
is swept below sface's.
Scores: recall of planted intruders, false-removal rate of genuine images, the share of each
identity's hardest genuine pairs (its lowest-scoring 10 %) whose two images both survive, and
on the clean sets (no intruders) the share of genuine images flagged.
Writes bench/results/curation_looks.json.

    python bench/curation_looks.py            # the benchmark
    python bench/curation_looks.py --table    # its results as Markdown
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from faceforge.core.data import lfw_dir, shared_data_dir
from faceforge.core.files import atomic_write_json
from faceforge.core.vectors import unit_rows
from faceforge.curate.graph_filter import filter_dataset, identity_rows, leave_one_out_scores, scaled_margin
from faceforge.models.cards import SFACE
from common import machine  # bench/common.py

RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path.home() / ".cache" / "faceforge" / "curation"
T = float(SFACE.threshold("verify"))
MARGIN = scaled_margin(T)
RATES, KINDS = (0.05, 0.20), ("random", "lookalike")


def embed(name: str, root: Path, min_images: int) -> dict:
    """Unit sface embeddings of the central face of every photo of identities with enough images."""
    cache = CACHE / f"sface_{name}.npz"
    if cache.exists():
        return dict(np.load(cache))
    from faceforge.pipeline import FaceRecord, FacePipeline
    people = [p for p in sorted(root.iterdir()) if p.is_dir() and len(list(p.glob("*.jpg"))) >= min_images]
    files = [f for p in people for f in sorted(p.glob("*.jpg"))]
    pipe = FacePipeline(detector="yunet", embedder="sface", device="cpu")
    names, ids, embs = [], [], []
    for rec in pipe.process_files(files, select="central"):
        if isinstance(rec, FaceRecord):
            names.append(rec.path), ids.append(Path(rec.path).parent.name), embs.append(rec.embedding)
    out = {"names": np.array(names), "ids": np.array(ids), "emb": np.stack(embs).astype(np.float32)}
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def planted(data: dict, kind: str, rate: float, seed: int = 0) -> dict:
    """Rows into the dataset, the folder each is filed under, whether it is genuine."""
    rng = np.random.default_rng(seed)
    groups = identity_rows(data["ids"])
    names = sorted(groups)
    templates = unit_rows(np.stack([data["emb"][groups[n]].mean(axis=0) for n in names]))
    sims = templates @ templates.T
    np.fill_diagonal(sims, -np.inf)
    rows, folder, genuine = [], [], []
    for i, name in enumerate(names):
        own = groups[name]
        k = max(1, int(round(len(own) * rate / (1 - rate)))) if rate > 0 else 0
        if kind == "random":
            pool = np.flatnonzero(data["ids"] != name)
        else:
            pool = groups[names[int(np.argmax(sims[i]))]]
        extra = rng.choice(pool, min(k, len(pool)), replace=False) if k else np.zeros(0, np.int64)
        rows.append(np.concatenate([own, extra]))
        folder += [name] * len(rows[-1])
        genuine += [True] * len(own) + [False] * len(extra)
    return {"rows": np.concatenate(rows), "folder": np.array(folder), "genuine": np.array(genuine)}


def fixed_threshold(emb: np.ndarray, folder: np.ndarray, t: float) -> np.ndarray:
    keep = np.ones(len(emb), bool)
    for rows in identity_rows(folder).values():
        if len(rows) > 1:
            keep[rows] = leave_one_out_scores(emb[rows]) >= t
    return keep


def run_method(method: str, emb: np.ndarray, folder: np.ndarray, same: float) -> np.ndarray:
    if method == "fixed threshold":
        return fixed_threshold(emb, folder, T)
    algo, rule = method.split(" / ")
    kw = dict(method="dbscan", eps=0.3) if algo == "dbscan" else dict(threshold=T, margin=MARGIN)
    res = filter_dataset(emb, folder, rule=rule, same_threshold=same, **kw)
    keep = np.zeros(len(emb), bool)
    for name, rows in identity_rows(folder).items():
        keep[rows] = res[name].keep
    return keep


def hardest_pairs(emb: np.ndarray, folder: np.ndarray, genuine: np.ndarray) -> list[tuple[int, int]]:
    """Each identity's lowest-scoring 10 % of genuine pairs (at least one)."""
    out = []
    for rows in identity_rows(folder).values():
        g = rows[genuine[rows]]
        if len(g) < 2:
            continue
        s = emb[g] @ emb[g].T
        iu = np.triu_indices(len(g), 1)
        order = np.argsort(s[iu])[:max(1, int(round(0.1 * len(iu[0]))))]
        out += [(int(g[iu[0][k]]), int(g[iu[1][k]])) for k in order]
    return out


def scores(keep: np.ndarray, genuine: np.ndarray, pairs: list[tuple[int, int]]) -> dict:
    intr = ~genuine
    return {"intruder_recall": round(float((~keep[intr]).mean()), 4) if intr.any() else None,
            "false_removal": round(float((~keep[genuine]).mean()), 4),
            "hardest_pairs_kept": round(float(np.mean([keep[a] and keep[b] for a, b in pairs])), 4)}


METHODS = ("label_propagation / reference", "label_propagation / community", "dbscan / reference",
           "dbscan / community", "fixed threshold")


def evaluate(data: dict, same: float) -> list[dict]:
    rows = []
    for kind, rate in [("clean", 0.0)] + [(k, r) for k in KINDS for r in RATES]:
        p = planted(data, "random" if kind == "clean" else kind, rate)
        emb = data["emb"][p["rows"]]
        pairs = hardest_pairs(emb, p["folder"], p["genuine"])
        for method in METHODS:
            t0 = time.perf_counter()
            keep = run_method(method, emb, p["folder"], same)
            rows.append({"intruders": kind, "rate": rate, "method": method, **scores(keep, p["genuine"], pairs),
                         "seconds": round(time.perf_counter() - t0, 2)})
            print(f"  {kind:9s} {rate:4.2f} {method:32s} " + "  ".join(
                f"{k} {v}" for k, v in rows[-1].items() if k not in ("intruders", "rate", "method")), flush=True)
    return rows


def tune_same(data: dict) -> float:
    """The largest same-person template threshold whose false-removal rate on the 20 %
    look-alike set stays ≤ 1 % (more flagged intruders, at that cost)."""
    p = planted(data, "lookalike", 0.20)
    emb = data["emb"][p["rows"]]
    best = T
    for same in np.round(np.arange(0.20, 0.70, 0.02), 2):
        keep = run_method("label_propagation / community", emb, p["folder"], float(same))
        if (~keep[p["genuine"]]).mean() <= 0.01:
            best = float(same)
    return best


def sweep_same(data: dict, rate: float = 0.05) -> list[dict]:
    """What any same-person threshold buys under the community rule: intruder recall (both
    kinds) and false removal as the threshold falls from sface's 0.363 — the trade-off curve the
    ≤ 1 % false-removal target is read from."""
    sets = {kind: planted(data, kind, rate) for kind in KINDS}
    out = []
    for same in (0.05, 0.10, 0.15, 0.20, 0.25, 0.30, T):
        row = {"same_threshold": same}
        for kind, p in sets.items():
            keep = run_method("label_propagation / community", data["emb"][p["rows"]], p["folder"], same)
            row[f"{kind}_recall"] = round(float((~keep[~p["genuine"]]).mean()), 4)
            row[f"{kind}_false_removal"] = round(float((~keep[p["genuine"]]).mean()), 4)
        out.append(row)
        print("  " + "  ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    return out


def main() -> None:
    celeba = embed("celeba", shared_data_dir() / "celeba_subset", 5)
    lfw = embed("lfw10", lfw_dir() / "images", 10)
    res = {"machine": machine(), "model": "sface", "threshold": T, "margin": round(MARGIN, 4),
           "datasets": {"celeba": {"identities": len(set(celeba["ids"])), "faces": len(celeba["ids"])},
                        "lfw": {"identities": len(set(lfw["ids"])), "faces": len(lfw["ids"])}}}
    tuned = tune_same(lfw)
    res["same_threshold_tuned_on_lfw"] = tuned
    res["results"] = {}
    for name, data in (("celeba", celeba), ("lfw", lfw)):
        print(f"{name}, same-person threshold {T} (the model's):", flush=True)
        res["results"][name] = evaluate(data, T)
    print(f"celeba, same-person threshold {tuned} (tuned on LFW):", flush=True)
    res["results"]["celeba_tuned_on_lfw"] = [
        r for r in evaluate(celeba, tuned) if "community" in r["method"]]
    print(f"celeba, community rule, same-person threshold swept ({RATES[0]:.0%} intruders):", flush=True)
    res["celeba_same_threshold_sweep"] = sweep_same(celeba, RATES[0])
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / "curation_looks.json", res)
    print({"written": str(RESULTS / "curation_looks.json"), "tuned": tuned})


def table() -> None:
    """The results as Markdown, one table per dataset (for the README and docs)."""
    import json
    res = json.loads((RESULTS / "curation_looks.json").read_text())
    cols = [(kind, rate) for kind in ("random", "lookalike") for rate in RATES]
    for name in ("celeba", "lfw"):
        rows = res["results"][name]
        methods = list(dict.fromkeys(r["method"] for r in rows))
        print(f"| {name}: method | clean set: genuine removed | hardest genuine pairs kept | "
              + " | ".join(f"{k} {rate:.0%}: recall / genuine removed" for k, rate in cols) + " |")
        print("|---" * (3 + len(cols)) + "|")
        for m in methods:
            at = {(r["intruders"], r["rate"]): r for r in rows if r["method"] == m}
            clean = at[("clean", 0.0)]
            print(f"| {m} | {100 * clean['false_removal']:.2f} % | {100 * clean['hardest_pairs_kept']:.1f} % | "
                  + " | ".join(f"{100 * at[c]['intruder_recall']:.1f} / {100 * at[c]['false_removal']:.2f} %"
                               for c in cols) + " |")
        print()


if __name__ == "__main__":
    import sys
    table() if sys.argv[1:] == ["--table"] else main()
