"""Throughput of each detector and embedder on 500 LFW images, and of whole pipelines,
against the face_recognition-style baseline measured in the same run: one image at a time,
dlib HOG (upsample 1) → 5-point shape → dlib compute_face_descriptor.

Writes bench/results/pipeline.json.  python bench/pipeline.py [--n 500] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from faceforge.core.data import lfw_dir
from faceforge.core.files import atomic_write_json
from faceforge.io import load_image
from faceforge.core.resources import package_file
from faceforge.models.embedders import create_embedder
from faceforge.vision.detectors import create_detector
from faceforge.vision.detectors.base import central_face

RESULTS = Path(__file__).resolve().parent / "results"


def lfw_sample(n: int) -> list[Path]:
    files = sorted((lfw_dir() / "images").glob("*/*.jpg"))
    if not files:
        raise SystemExit(f"LFW not found at {lfw_dir()} (set FACEFORGE_LFW)")
    idx = np.linspace(0, len(files) - 1, n).round().astype(int)
    return [files[i] for i in idx]


def timed(fn, *args) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def face_recognition_baseline(images: list[np.ndarray]) -> tuple[float, int]:
    import dlib
    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(package_file("face_recognition_models", "models",
                                            "shape_predictor_5_face_landmarks.dat"))
    rec = dlib.face_recognition_model_v1(package_file("face_recognition_models", "models",
                                                       "dlib_face_recognition_resnet_model_v1.dat"))
    faces = 0
    t0 = time.perf_counter()
    for img in images:
        for r in det(img, 1):
            rec.compute_face_descriptor(img, sp(img, r))
            faces += 1
    return time.perf_counter() - t0, faces


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    images = [load_image(p) for p in lfw_sample(args.n)]
    n, bs = len(images), args.batch_size
    out: dict = {"images": n, "batch_size": bs, "device": args.device,
                 "machine": {"torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                             "torch": torch.__version__,
                             "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
                 "detectors": {}, "embedders": {}, "pipelines": {}}

    base_s, base_faces = face_recognition_baseline(images)
    out["baseline"] = {"name": "face_recognition-style per-image dlib (HOG + 5-point + ResNet)",
                       "seconds": round(base_s, 2), "faces": base_faces, "faces_per_s": round(base_faces / base_s, 2)}

    faces = {}
    for name in ("yunet", "dlib", "mtcnn"):
        det = create_detector(name, device=args.device)
        det.detect(images[0])  # warm-up
        secs, found = timed(lambda: [det.detect(im) for im in images])
        row = {"seconds": round(secs, 2), "images_per_s": round(n / secs, 2),
               "faces_found": int(sum(len(f) for f in found))}
        if name == "mtcnn":  # LFW images share one size, so the pyramid is batched
            bsecs, _ = timed(lambda: [r for i in range(0, n, bs) for r in det.detect_batch(images[i:i + bs])])
            row.update(batched_seconds=round(bsecs, 2), batched_images_per_s=round(n / bsecs, 2))
        out["detectors"][name] = row
        faces[name] = [central_face(f, im.shape) for f, im in zip(found, images)]

    for name in ("sface", "dlib-r29"):
        # SFace is OpenCV int8 and CPU-only: "auto" is its CPU; the torch models use --device.
        emb = create_embedder(name, batch_size=bs, device="auto" if name == "sface" else args.device)
        crops = np.stack([emb.align(im, f) for im, f in zip(images, faces["yunet"]) if f is not None])
        emb.embed_crops(crops[:2])  # warm-up
        secs, _ = timed(emb.embed_crops, crops)
        out["embedders"][name] = {"seconds": round(secs, 2), "faces_per_s": round(len(crops) / secs, 2)}

    for det_name, emb_name in (("yunet", "sface"), ("yunet", "dlib-r29"), ("mtcnn", "dlib-r29")):
        d, e = out["detectors"][det_name], out["embedders"][emb_name]
        det_s = d.get("batched_seconds", d["seconds"])
        n_faces = sum(f is not None for f in faces[det_name])
        total = det_s + e["seconds"] * n_faces / max(1, sum(f is not None for f in faces["yunet"]))
        fps = n_faces / total
        out["pipelines"][f"{det_name} + {emb_name}"] = {
            "faces_per_s": round(fps, 2), "ratio_vs_baseline": round(fps / out["baseline"]["faces_per_s"], 2)}

    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / "pipeline.json", out)
    print(f"baseline ({out['baseline']['name']}): {out['baseline']['faces_per_s']} faces/s")
    for k, v in out["detectors"].items():
        extra = f", batched {v['batched_images_per_s']}" if "batched_images_per_s" in v else ""
        print(f"detector {k:8s} {v['images_per_s']:8.2f} images/s{extra}")
    for k, v in out["embedders"].items():
        print(f"embedder {k:8s} {v['faces_per_s']:8.2f} faces/s")
    for k, v in out["pipelines"].items():
        print(f"pipeline {k:18s} {v['faces_per_s']:8.2f} faces/s  = {v['ratio_vs_baseline']}× baseline")
    print(json.dumps({"written": str(RESULTS / "pipeline.json")}))


if __name__ == "__main__":
    main()
