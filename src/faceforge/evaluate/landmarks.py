"""Landmark evaluation on a labelled list (`faceforge landmarks eval`): the network or a
detector's own points, raw and after a mean per-point offset fitted on another list."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from faceforge.landmarks.evaluate import (
    apply_offset,
    detector_predictor,
    fit_offset,
    network_predictor,
    predict_samples,
)
from faceforge.landmarks.labels import read_landmark_list
from faceforge.landmarks.metrics import ced_curve, score_predictions


def evaluate_list(labels: str | Path, weights: str | Path | None = None, detector: str | None = None,
                  offset_from: str | Path | None = None, ced: str | Path | None = None, device: str = "cpu") -> dict:
    """NME report of one predictor (the landmark network, or `detector`'s points) on `labels`;
    faces a detector misses are counted and left out of the NME."""
    samples = read_landmark_list(labels)
    if detector:
        from faceforge.vision.detectors import create_detector
        predictor, name = detector_predictor(create_detector(detector, device=device)), detector
    else:
        from faceforge.landmarks.landmarker import Landmarker
        lm = Landmarker.load(weights, device=device)
        predictor, name = network_predictor(lm), lm.name
    truth = np.stack([s.points for s in samples]).astype(np.float64)
    pred = predict_samples(samples, predictor, f"{name} on {Path(labels).name}")
    raw, per_face = score_predictions(pred, truth)
    res = {"labels": str(labels), "predictor": name, "faces": len(samples), "found": raw["found"], "raw": raw}
    curves = {name: ced_curve(per_face)}
    if offset_from:
        fit_samples = read_landmark_list(offset_from)
        fit_pred = predict_samples(fit_samples, predictor, f"{name} on {Path(offset_from).name}")
        offset = fit_offset(fit_pred, np.stack([s.points for s in fit_samples]).astype(np.float64))
        res["offset"] = {"fitted_on": str(offset_from), "per_point_iod": offset.round(5).tolist()}
        res["offset_corrected"], per_face_c = score_predictions(apply_offset(pred, offset), truth)
        curves[f"{name}, offset-corrected"] = ced_curve(per_face_c)
    if ced:
        from faceforge.evaluate.plots import plot_ced
        plot_ced(curves, ced, f"{Path(labels).name}: cumulative NME")
        res["ced"] = str(ced)
    return res
