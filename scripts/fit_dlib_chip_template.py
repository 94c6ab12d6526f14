"""Fit where dlib's 150×150 face chip (padding 0.25) puts the five standard landmarks.

dlib aligns with its own points (eye corners, nose base); every other detector gives eye
centres, nose tip and mouth corners. For each CelebA photo: dlib HOG + 5-point predictor
→ dlib.get_face_chip, then YuNet on the chip → five points; the per-point median is the
template (faceforge.vision.align.DLIB_CHIP_TEMPLATE_150). Fitted on CelebA so that LFW stays
an independent test set.

    python scripts/fit_dlib_chip_template.py [--data ../shared/data/celeba_subset] [--limit 1500]
"""
from __future__ import annotations

import argparse
import json

import cv2
import dlib
import numpy as np

from faceforge.core.data import shared_data_dir
from faceforge.io import list_images, load_image
from faceforge.vision.detectors import create_detector
from faceforge.vision.detectors.dlib_hog import dlib_model_path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(shared_data_dir() / "celeba_subset"))
    ap.add_argument("--limit", type=int, default=1500)
    args = ap.parse_args()
    hog = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(dlib_model_path("shape_predictor_5_face_landmarks.dat"))
    yunet = create_detector("yunet", score_threshold=0.8)
    pad = 75  # YuNet needs context around a tightly cropped face
    pts = []
    for path in list_images(args.data)[: args.limit]:
        img = load_image(path)
        rects = hog(img, 1)
        if len(rects) != 1:
            continue
        chip = dlib.get_face_chip(img, sp(img, rects[0]), 150, 0.25)
        canvas = cv2.copyMakeBorder(chip, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        faces = yunet.detect(canvas)
        if len(faces) == 1:
            pts.append(faces[0].landmarks - pad)
    pts = np.stack(pts)
    med = np.median(pts, axis=0)
    spread = np.median(np.abs(pts - med), axis=0)
    print(json.dumps({"n_faces": len(pts), "template": np.round(med, 4).tolist(),
                      "median_abs_deviation_px": np.round(spread, 2).tolist()}, indent=1))


if __name__ == "__main__":
    main()
