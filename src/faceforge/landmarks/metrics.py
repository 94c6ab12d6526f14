"""How a landmarker is judged: the normalised mean error (NME), the mean point-to-point
distance divided by the inter-ocular distance (between the two eye centres of the ground
truth), per point and per face; the failure rate (share of faces with NME above 0.1); and the
cumulative error distribution (CED: share of faces at or below each NME)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faceforge.core.errors import FaceForgeError
from faceforge.vision.face import LANDMARK_NAMES


def nme(pred: np.ndarray, truth: np.ndarray, eyes: tuple[int, int] = (0, 1)) -> tuple[np.ndarray, np.ndarray]:
    """pred, truth: (N, K, 2) → (per-face NME (N,), per-face-per-point error (N, K)), both
    divided by each face's inter-ocular distance."""
    pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    if pred.shape != truth.shape or pred.ndim != 3 or pred.shape[-1] != 2:
        raise FaceForgeError(f"predictions {pred.shape} and labels {truth.shape} must both be (N, K, 2)")
    iod = np.linalg.norm(truth[:, eyes[0]] - truth[:, eyes[1]], axis=-1)
    if np.any(iod <= 0):
        raise FaceForgeError(f"{int(np.sum(iod <= 0))} faces have both eyes at one point: NME is undefined")
    per_point = np.linalg.norm(pred - truth, axis=-1) / iod[:, None]
    return per_point.mean(axis=1), per_point


@dataclass
class NMEReport:
    nme: float  # mean over faces
    per_point: dict[str, float]
    failure_rate: float  # share of faces with NME > failure_threshold
    failure_threshold: float
    median: float
    faces: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def nme_report(pred: np.ndarray, truth: np.ndarray, failure_threshold: float = 0.1,
               names: tuple[str, ...] = LANDMARK_NAMES) -> NMEReport:
    return _report(*nme(pred, truth), failure_threshold, names)


def _report(per_face: np.ndarray, per_point: np.ndarray, failure_threshold: float,
            names: tuple[str, ...]) -> NMEReport:
    return NMEReport(nme=float(per_face.mean()), per_point=dict(zip(names, map(float, per_point.mean(axis=0)))),
                     failure_rate=float(np.mean(per_face > failure_threshold)), failure_threshold=failure_threshold,
                     median=float(np.median(per_face)), faces=len(per_face))


def ced_curve(per_face: np.ndarray, max_error: float = 0.2, steps: int = 201) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds, share of faces with NME ≤ threshold) from 0 to max_error, and the area
    under it divided by max_error is the usual AUC@max_error."""
    t = np.linspace(0.0, max_error, steps)
    e = np.sort(np.asarray(per_face, np.float64))
    return t, np.searchsorted(e, t, side="right") / max(len(e), 1)


def ced_auc(per_face: np.ndarray, max_error: float = 0.1) -> float:
    """Area under the CED curve up to max_error, divided by max_error (1 = every face exact):
    exactly the mean over faces of max(0, 1 − NME / max_error)."""
    e = np.asarray(per_face, np.float64)
    return float(np.clip(1.0 - e / max_error, 0.0, 1.0).mean()) if len(e) else float("nan")


def score_predictions(pred: np.ndarray, truth: np.ndarray, failure_threshold: float = 0.1
                      ) -> tuple[dict, np.ndarray]:
    """The NME report (+ `auc_0.1` and `found`) of predictions where rows of NaN mark faces a
    predictor did not find (left out of the errors, counted in `found`), and the per-face NMEs."""
    found = ~np.isnan(pred).any(axis=(1, 2))
    if not found.any():
        raise FaceForgeError("the predictor found no face in any labelled crop: nothing to score")
    per_face, per_point = nme(pred[found], truth[found])
    r = _report(per_face, per_point, failure_threshold, LANDMARK_NAMES).as_dict()
    r["auc_0.1"] = ced_auc(per_face, 0.1)
    r["found"] = int(found.sum())
    return r, per_face
