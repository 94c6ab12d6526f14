import numpy as np
import pytest

from faceforge.core.errors import FaceForgeError
from faceforge.landmarks.metrics import ced_auc, ced_curve, nme, nme_report


def _faces():
    truth = np.array([[[0, 0], [10, 0], [5, 5], [2, 9], [8, 9]]] * 2, np.float64)  # eye distance 10
    pred = truth.copy()
    pred[0, 0] += (3, 4)  # face 0: the left eye 5 px off = 0.5 eye distances, the others exact
    return pred, truth


def test_nme_by_hand():
    pred, truth = _faces()
    per_face, per_point = nme(pred, truth)
    assert per_face.tolist() == pytest.approx([0.1, 0.0])  # (0.5 + 0 + 0 + 0 + 0) / 5
    assert per_point[0].tolist() == pytest.approx([0.5, 0, 0, 0, 0])
    r = nme_report(pred, truth)
    assert r.nme == pytest.approx(0.05) and r.median == pytest.approx(0.05)
    assert r.per_point["left_eye"] == pytest.approx(0.25) and r.per_point["nose"] == 0
    assert r.failure_rate == 0.0  # 0.1 is not above the 0.1 threshold
    assert nme_report(pred, truth, failure_threshold=0.05).failure_rate == 0.5


def test_ced_by_hand():
    t, share = ced_curve(np.array([0.0, 0.05, 0.1, 0.3]), max_error=0.2, steps=5)  # 0, .05, .1, .15, .2
    assert t.tolist() == pytest.approx([0, 0.05, 0.1, 0.15, 0.2])
    assert share.tolist() == [0.25, 0.5, 0.75, 0.75, 0.75]
    assert ced_auc(np.zeros(3)) == pytest.approx(1.0)
    assert ced_auc(np.full(3, 0.05), max_error=0.1) == pytest.approx(0.5, abs=2e-3)


def test_nme_refuses_mismatched_shapes_and_coincident_eyes():
    pred, truth = _faces()
    with pytest.raises(FaceForgeError, match="must both be"):
        nme(pred[:, :4], truth)
    truth[1, 1] = truth[1, 0]
    with pytest.raises(FaceForgeError, match="both eyes at one point"):
        nme(pred, truth)
