"""IJB-C 1:1 at the real protocol's size, on synthetic features: 469,375 images in 23,124
templates, 15,658,489 template pairs (19,557 genuine), 512-d embeddings. Times media →
template pooling, pair scoring and the TPR table for one mode, against the usual per-template
loop (boolean mask per template, then per media, as the reference evaluation scripts pool)
measured in the same run on the same features. Writes bench/results/ijbc_scale.json.

    python bench/ijbc_scale.py [--scale 1.0]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from faceforge.core.files import atomic_write_json
from faceforge.evaluate.ijbc import image_features, pair_scores, template_features
from faceforge.evaluate.verification import tpr_at_fpr
from common import measured  # bench/common.py

RESULTS = Path(__file__).resolve().parent / "results"


def synthetic(scale: float, dim: int = 512, seed: int = 0):
    """IJB-C-shaped metadata: identities own templates, templates own media (stills or
    video frames), genuine pairs share an identity; features = identity centre + noise."""
    rng = np.random.default_rng(seed)
    n_templates, n_images = int(23_124 * scale), int(469_375 * scale)
    n_pairs, n_genuine = int(15_658_489 * scale), int(19_557 * scale)
    n_ids = max(2, int(3_531 * scale))
    owner = rng.integers(0, n_ids, n_templates)
    templates = np.sort(rng.integers(0, n_templates, n_images)) + 1
    medias = templates * 100 + rng.integers(0, 6, n_images)   # ≤ 6 media per template
    centres = rng.normal(size=(n_ids, dim)).astype(np.float32)
    raw = centres[owner[templates - 1]] + 1.5 * rng.normal(size=(n_images, dim)).astype(np.float32)
    flip = raw + 0.3 * rng.normal(size=raw.shape).astype(np.float32)
    by_id = [np.flatnonzero(owner == i) + 1 for i in range(n_ids)]
    multi = [t for t in by_id if len(t) > 1]
    g = np.array([rng.choice(multi[i], 2, replace=False) for i in rng.integers(0, len(multi), n_genuine)])
    im = rng.integers(1, n_templates + 1, size=(n_pairs - n_genuine, 2))
    im = im[owner[im[:, 0] - 1] != owner[im[:, 1] - 1]]
    pairs = np.concatenate([g, im])
    labels = np.r_[np.ones(len(g), bool), np.zeros(len(im), bool)]
    det = rng.uniform(0.6, 1.0, n_images).astype(np.float32)
    return raw, flip, det, templates, medias, pairs, labels


def loop_pooling(feats, templates, medias):
    """The per-template loop: one boolean mask over all images per template."""
    uniq = np.unique(templates)
    out = np.zeros((len(uniq), feats.shape[1]), np.float32)
    for k, t in enumerate(uniq):
        ind = templates == t
        f, m = feats[ind], medias[ind]
        total = sum(f[m == u].mean(axis=0) for u in np.unique(m))
        out[k] = total / np.linalg.norm(total)
    return uniq, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0)
    args = ap.parse_args()
    raw, flip, det, templates, medias, pairs, labels = synthetic(args.scale)
    feats = image_features(raw, flip, det, "N0D0F1")
    (tids, tf), t_pool, m_pool = measured(template_features, feats, templates, medias)
    scores, t_score, m_score = measured(pair_scores, tids, tf, pairs)
    table, t_tpr, _ = measured(tpr_at_fpr, scores, labels)
    (lt, lf), t_loop, _ = measured(loop_pooling, feats, templates, medias)
    assert np.array_equal(lt, tids)
    diff = float(np.abs(lf - tf).max())
    res = {
        "images": len(raw), "templates": len(tids), "pairs": len(pairs), "genuine_pairs": int(labels.sum()),
        "dim": raw.shape[1], "mode": "N0D0F1",
        "pooling_seconds": round(t_pool, 2), "pooling_peak_mb": round(m_pool / 2**20, 1),
        "loop_pooling_seconds": round(t_loop, 2), "pooling_speedup_vs_loop": round(t_loop / t_pool, 1),
        "max_abs_difference_vs_loop": diff,
        "pair_scoring_seconds": round(t_score, 2), "pair_scoring_peak_mb": round(m_score / 2**20, 1),
        "tpr_at_fpr_seconds": round(t_tpr, 2),
        "total_seconds_per_mode": round(t_pool + t_score + t_tpr, 2),
        "tpr_at_fpr": table,
    }
    print(f"{len(raw):,} images → {len(tids):,} templates: pooling {t_pool:.2f} s vs per-template loop "
          f"{t_loop:.2f} s ({t_loop / t_pool:.1f}× faster, max |Δ| {diff:.1e}); {len(pairs):,} pair scores "
          f"{t_score:.2f} s; TPR table {t_tpr:.2f} s")
    atomic_write_json(RESULTS / "ijbc_scale.json", res)


if __name__ == "__main__":
    main()
