"""Measure BatchNorm input statistics of dlib-r29 on real faces and save them.

dlib folded its BatchNorms into affine layers; unfolding needs each channel's input mean
and variance on in-domain data. Measured on CelebA (YuNet + dlib chip), so LFW stays an
independent test set. Writes src/faceforge/_data/dlib_r29_bn_stats.safetensors.

    python scripts/unfold_dlib_bn.py [--data ../shared/data/celeba_subset] [--limit 2000]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from safetensors.torch import save_file

from faceforge.core.data import shared_data_dir
from faceforge.core.progress import progress
from faceforge.models.dlib_r29 import measure_bn_input_stats
from faceforge.models.embedders import DlibR29Embedder, dlib_r29_bn_stats_path
from faceforge.io import list_images, load_image
from faceforge.vision.align import landmarks_plausible
from faceforge.vision.detectors import create_detector
from faceforge.vision.detectors.base import central_face


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(shared_data_dir() / "celeba_subset"))
    ap.add_argument("--limit", type=int, default=2000)
    args = ap.parse_args()
    emb = DlibR29Embedder(device="cpu", unfold_bn=False)
    detector = create_detector("yunet")
    files = list_images(args.data)
    files = files[:: max(1, len(files) // args.limit)][: args.limit]
    chips = []
    for path in progress(files, "faces", enabled=True):
        image = load_image(path)
        face = central_face(detector.detect(image), image.shape)
        if face is not None and landmarks_plausible(face.landmarks):
            chips.append(emb.align(image, face))
    chips = np.stack(chips)
    batches = (emb.preprocess(chips[i:i + 64]) for i in range(0, len(chips), 64))
    stats = measure_bn_input_stats(emb.model, batches)
    tensors = {}
    for i, (m, v) in enumerate(stats):
        tensors[f"{i}.mean"] = m.contiguous()
        tensors[f"{i}.var"] = v.contiguous()
    out = dlib_r29_bn_stats_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata={"faces": str(len(chips)), "source": "celeba_subset",
                                           "aligner": "yunet + dlib chip template"})
    print(f"{len(chips)} faces, {len(stats)} BatchNorm layers -> {out}")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
