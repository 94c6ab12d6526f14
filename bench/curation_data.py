"""The inputs of the curation benchmarks, computed once and cached (~/.cache/faceforge/curation):

- every LFW image (13,233): its central face (YuNet), dlib-r29 raw embedding and BatchNorm-input
  quality features in one forward; images with no plausible face keep the median landmarks;
- non-face crops of the same size: the 100 non-face images of scikit-image's lfw_subset and
  procedural fractals, embedded as if they were aligned faces (what a scraped dataset holds);
- a QAA estimator trained on the CelebA subset (cross-dataset: nothing of LFW is seen), and the
  CelebA faces' embeddings and features (the set the curation benchmark tunes on).

    python bench/curation_data.py      # fills the cache; the benchmarks call `load()`
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from faceforge.core.data import lfw_dir, shared_data_dir
from faceforge.evaluate.lfw import aligned_crops, detect_lfw_faces
from faceforge.io.fractals import fractal_image
from faceforge.models.embedders import create_embedder
from faceforge.pipeline import FacePipeline
from faceforge.vision.detectors import create_detector
from faceforge.quality.estimator import QualityEstimator
from faceforge.quality.scorer import QualityScorer
from faceforge.quality.workflow import train_from_folder

CACHE = Path.home() / ".cache" / "faceforge" / "curation"
N_FRACTALS = 100


def _features(scorer: QualityScorer, crops: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    raws, feats = [], []
    for i in range(0, len(crops), batch):
        r, f = scorer.features(crops[i:i + batch])
        raws.append(r), feats.append(f)
    return np.concatenate(raws), np.concatenate(feats)


def _lfw(scorer: QualityScorer, show: bool) -> dict:
    root = lfw_dir()
    names = sorted(str(p.relative_to(root / "images")) for p in (root / "images").glob("*/*.jpg"))
    images, faces, missing = detect_lfw_faces(root, names, create_detector("yunet"), show)
    raws, feats = [], []
    for i in range(0, len(names), 256):
        r, f = _features(scorer, aligned_crops(scorer.embedder, images, faces, names[i:i + 256]))
        raws.append(r), feats.append(f)
    missing = set(missing)
    return {"names": np.array(names), "ids": np.array([n.split("/")[0] for n in names]),
            "raw": np.concatenate(raws), "features": np.concatenate(feats),
            "found": np.array([n not in missing for n in names])}


def _nonfaces(scorer: QualityScorer) -> dict:
    from skimage.data import lfw_subset
    size = scorer.embedder.spec.size
    gray = lfw_subset()[100:]  # the second hundred are the non-face crops
    subset = [cv2.resize(np.repeat((g * 255).astype(np.uint8)[..., None], 3, axis=2), (size, size),
                         interpolation=cv2.INTER_LINEAR) for g in gray]
    fractals = [fractal_image(i, size, seed=7) for i in range(N_FRACTALS)]
    raw, feats = _features(scorer, np.stack(subset + fractals))
    names = [f"lfw_subset_nonface_{i:03d}" for i in range(len(subset))] + [f"fractal_{i:03d}" for i in range(N_FRACTALS)]
    return {"names": np.array(names), "raw": raw, "features": feats,
            "crops": np.stack(subset + fractals)}


def build(show: bool = True) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    embedder = create_embedder("dlib-r29", device="cpu")
    if not all((CACHE / f).exists() for f in ("celeba_qaa.cbm", "celeba.npz")):
        est, data = train_from_folder(FacePipeline("yunet", embedder, device="cpu"),
                                      shared_data_dir() / "celeba_subset", show_progress=show)
        est.save(CACHE / "celeba_qaa.cbm")
        np.savez(CACHE / "celeba.npz", names=np.array(data.paths), ids=data.identities, raw=data.embeddings,
                 features=data.features)
    scorer = QualityScorer(embedder)
    if not (CACHE / "nonface.npz").exists():
        np.savez(CACHE / "nonface.npz", **_nonfaces(scorer))
    if not (CACHE / "lfw.npz").exists():
        np.savez(CACHE / "lfw.npz", **_lfw(scorer, show))


def load() -> tuple[dict, dict, dict, QualityEstimator]:
    """(lfw, non-face, CelebA arrays, CelebA-trained estimator); builds the cache when missing.
    CelebA's `raw` are the pipeline's unit embeddings (the curation code normalises anyway)."""
    if not all((CACHE / f).exists() for f in ("celeba_qaa.cbm", "celeba.npz", "nonface.npz", "lfw.npz")):
        build(sys.stderr.isatty())
    lfw = dict(np.load(CACHE / "lfw.npz"))
    nonface = dict(np.load(CACHE / "nonface.npz"))
    celeba = dict(np.load(CACHE / "celeba.npz"))
    return lfw, nonface, celeba, QualityEstimator.load(CACHE / "celeba_qaa.cbm")


if __name__ == "__main__":
    build()
    for name, arrays in zip(("lfw", "nonface", "celeba"), load()[:3]):
        print(name, {k: v.shape for k, v in arrays.items()})
