"""LFW verification: the official 10-fold `pairs.txt` protocol.

Every pair is scored - the protocol leaves no pair out. Images in which the detector finds
no face are not dropped: they are aligned with the median landmark layout of the images
where a face was found (LFW images are centred on the face), and counted in the result.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceforge.core.errors import FaceForgeError
from faceforge.core.progress import progress
from faceforge.evaluate.verification import auc, best_threshold, kfold_accuracy, roc, tpr_at_fpr
from faceforge.io.images import load_image
from faceforge.pipeline import FacePipeline
from faceforge.vision.align import landmarks_plausible
from faceforge.vision.detectors.base import central_face
from faceforge.vision.face import Face


@dataclass
class LfwPairs:
    left: list[str]   # image paths relative to images/
    right: list[str]
    same: np.ndarray  # bool
    fold: np.ndarray  # int


def _image(name: str, num: str) -> str:
    return f"{name}/{name}_{int(num):04d}.jpg"


def read_pairs(path: str | Path) -> LfwPairs:
    """Parse LFW's pairs.txt: header 'folds n', then per fold n same and n different pairs."""
    path = Path(path)
    try:
        lines = [l.split() for l in path.read_text().splitlines() if l.strip()]
    except OSError as exc:
        raise FaceForgeError(f"cannot read pairs file: {exc}", path) from None
    try:
        n_folds, n = int(lines[0][0]), int(lines[0][1])
    except (IndexError, ValueError):
        raise FaceForgeError("first line must be '<folds> <pairs per half-fold>'", path) from None
    body = lines[1:]
    if len(body) != 2 * n_folds * n:
        raise FaceForgeError(f"expected {2 * n_folds * n} pairs, found {len(body)}", path)
    left, right, same, fold = [], [], [], []
    for i, parts in enumerate(body):
        if len(parts) == 3:
            left.append(_image(parts[0], parts[1]))
            right.append(_image(parts[0], parts[2]))
            same.append(True)
        elif len(parts) == 4:
            left.append(_image(parts[0], parts[1]))
            right.append(_image(parts[2], parts[3]))
            same.append(False)
        else:
            raise FaceForgeError(f"line {i + 2}: expected 3 or 4 fields, got {len(parts)}", path)
        fold.append(i // (2 * n))
    return LfwPairs(left, right, np.array(same), np.array(fold))


def detect_lfw_faces(root: Path, names: list[str], detector, show_progress: bool = True
                     ) -> tuple[dict[str, np.ndarray], dict[str, Face], list[str]]:
    """Load each image and pick its central face; images with no (plausible) detection get
    the median landmarks of the others. Returns images, faces and the names without one."""
    images, faces = {}, {}
    for name in progress(names, "detect", enabled=show_progress):
        img = load_image(root / "images" / name)
        face = central_face(detector.detect(img), img.shape)
        if face is not None and not landmarks_plausible(face.landmarks):
            face = None
        images[name], faces[name] = img, face
    found = [f for f in faces.values() if f is not None]
    if not found:
        raise FaceForgeError("no face was detected in any LFW image", root)
    median = np.median(np.stack([f.landmarks for f in found]), axis=0).astype(np.float32)
    missing = [n for n, f in faces.items() if f is None]
    for n in missing:
        h, w = images[n].shape[:2]
        faces[n] = Face(box=np.array([0, 0, w, h], np.float32), score=0.0, landmarks=median, detector="fallback")
    return images, faces, missing


def aligned_crops(embedder, images: dict[str, np.ndarray], faces: dict[str, Face], names: list[str]) -> np.ndarray:
    return np.stack([embedder.align(images[n], faces[n]) for n in names])


def embed_faces(embedder, images: dict[str, np.ndarray], faces: dict[str, Face], names: list[str],
                batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
    """Align and embed the named images' faces in batches; rows follow `names`."""
    return np.concatenate([embedder.embed_crops(aligned_crops(embedder, images, faces, names[i:i + batch_size]))
                           for i in progress(range(0, len(names), batch_size), "embed", enabled=show_progress)])


def embed_lfw_images(root: str | Path, names: list[str], pipeline: FacePipeline, show_progress: bool = True
                     ) -> tuple[np.ndarray, list[str]]:
    """Embeddings of the named LFW images (rows follow `names`) under the no-face policy,
    and the names in which no face was found."""
    images, faces, missing = detect_lfw_faces(Path(root), names, pipeline.detector, show_progress)
    return embed_faces(pipeline.embedder, images, faces, names, pipeline.batch_size, show_progress), missing


def lfw_metrics(pairs: LfwPairs, embeddings: dict[str, np.ndarray], fprs=(1e-3, 1e-2, 1e-1)) -> dict:
    """Score every pair (cosine of unit vectors) and compute the protocol's numbers."""
    scores = np.einsum("ij,ij->i", np.stack([embeddings[n] for n in pairs.left]),
                       np.stack([embeddings[n] for n in pairs.right]))
    kf = kfold_accuracy(scores, pairs.same, pairs.fold)
    thr, acc_all = best_threshold(scores, pairs.same)
    curve = roc(scores, pairs.same)
    res = {"pairs": int(len(scores)), "folds": int(len(np.unique(pairs.fold))), **kf,
           "best_threshold_all_pairs": thr, "accuracy_at_best_threshold_all_pairs": acc_all,
           "auc": auc(curve), "tpr_at_fpr": tpr_at_fpr(scores, pairs.same, fprs)}
    res["_raw"] = {"scores": scores, "labels": pairs.same, "roc": curve}
    return res


def subset_pairs(pairs: LfwPairs, folds: int | None) -> LfwPairs:
    if folds is None:
        return pairs
    k = pairs.fold < folds
    return LfwPairs([l for l, m in zip(pairs.left, k) if m], [r for r, m in zip(pairs.right, k) if m],
                    pairs.same[k], pairs.fold[k])


def evaluate_lfw(root: str | Path, pipeline: FacePipeline, folds: int | None = None,
                 fprs=(1e-3, 1e-2, 1e-1), show_progress: bool = True) -> dict:
    """Run the protocol with one pipeline; returns a JSON-ready dict (arrays under '_raw')."""
    root = Path(root)
    pairs = subset_pairs(read_pairs(root / "pairs.txt"), folds)
    names = sorted(set(pairs.left) | set(pairs.right))
    t0 = time.perf_counter()
    vecs, missing = embed_lfw_images(root, names, pipeline, show_progress)
    elapsed = time.perf_counter() - t0
    result = {
        "protocol": "LFW pairs.txt, 10-fold (threshold chosen on 9 folds, tested on the 10th)",
        "detector": pipeline.detector.name, "model": pipeline.embedder.name, "flip": pipeline.embedder.flip,
        "images": len(names),
        **lfw_metrics(pairs, dict(zip(names, vecs)), fprs),
        "no_face_found": len(missing), "no_face_policy": NO_FACE_POLICY, "no_face_images": missing,
        "seconds": round(elapsed, 1), "ms_per_image": round(1000 * elapsed / max(len(names), 1), 2),
    }
    fixed = getattr(pipeline.embedder, "threshold", None)
    if fixed is not None:
        sc, same = result["_raw"]["scores"], result["_raw"]["labels"]
        result["fixed_threshold"] = fixed
        result["accuracy_at_fixed_threshold"] = float(((sc >= fixed) == same).mean())
    result["_raw"] = result.pop("_raw")  # keep it last
    return result


NO_FACE_POLICY = ("kept in the protocol: aligned with the median landmarks of the LFW images "
                  "where a face was detected (LFW images are centred on the face)")
