import numpy as np

from faceforge.landmarks.evaluate import (apply_offset, detector_predictor, fit_offset, network_predictor,
                                          predict_samples)
from faceforge.landmarks.labels import read_landmark_list
from faceforge.landmarks.metrics import nme
from faceforge.vision.detectors import create_detector

from ..conftest import DATA, need


def test_offset_fit_and_application_by_hand():
    truth = np.array([[[0, 0], [10, 0], [5, 5]], [[0, 0], [20, 0], [10, 10]]], float)  # eye distances 10, 20
    pred = truth.copy()
    pred[:, 2, 1] -= (1.0, 2.0)  # the nose 0.1 eye distances too high on both faces
    off = fit_offset(pred, truth)
    np.testing.assert_allclose(off, [[0, 0], [0, 0], [0, 0.1]])
    np.testing.assert_allclose(apply_offset(pred, off), truth)
    pred_missing = np.vstack([pred, np.full((1, 3, 2), np.nan)])  # a face not found does not count
    np.testing.assert_allclose(fit_offset(pred_missing, np.vstack([truth, truth[:1]])), off)


class _Fixed:
    """A stand-in network that always answers the same input-pixel points."""
    size = 40

    def predict_crops(self, crops):
        assert crops.shape == (1, 40, 40, 3)
        return np.array([[[19.5, 19.5], [0.0, 0.0]]]), np.ones((1, 2))


def test_network_predictions_are_mapped_back_to_the_crop():
    p = network_predictor(_Fixed())(np.zeros((80, 80, 3), np.uint8))
    # input 40 from crop 80: scale 0.5 about the centres 19.5 ↔ 39.5
    np.testing.assert_allclose(p, [[39.5, 39.5], [39.5 - 19.5 / 0.5, 39.5 - 19.5 / 0.5]], atol=1e-6)


def test_yunet_points_on_real_labelled_crops_are_near_the_labels():
    samples = read_landmark_list(need(DATA / "landmarks5" / "test.txt"))[:20]
    pred = predict_samples(samples, detector_predictor(create_detector("yunet")), show_progress=False)
    found = ~np.isnan(pred).any(axis=(1, 2))
    assert found.mean() >= 0.8
    per_face, _ = nme(pred[found], np.stack([s.points for s in samples])[found])
    assert np.median(per_face) < 0.15  # a detector's points (by its own conventions), not random ones


class _OnePoint:
    """A detector that reports one known pixel of the padded, enlarged image it is given."""
    name = "fake"

    def __init__(self, big_xy):
        self.big_xy, self.shape = np.array(big_xy, np.float32), None

    def detect(self, image):
        from faceforge.vision.face import Face
        self.shape = image.shape
        return [Face(np.array([0, 0, 1, 1], np.float32), 1.0, np.tile(self.big_xy, (5, 1)))]


def test_detector_points_are_mapped_back_through_pad_and_resize_by_hand():
    det = _OnePoint([201.5, 241.5])
    p = detector_predictor(det, pad=0.5, upscale=4.0)(np.zeros((80, 80, 3), np.uint8))
    assert det.shape == (640, 640, 3)  # 80 + 2·40, ×4
    # pixel centres: big = (crop + 40 + 0.5)·4 − 0.5, so 201.5 → 10 and 241.5 → 20
    np.testing.assert_allclose(p[0], [10.0, 20.0], atol=1e-5)
