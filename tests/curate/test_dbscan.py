"""DBSCAN baseline and the k-distance elbow, by hand."""
import numpy as np
import pytest

from faceforge.core.errors import FaceForgeError
from faceforge.curate.dbscan import dbscan_labels, elbow_eps, renumber_by_size


def _angles(deg):
    a = np.radians(np.asarray(deg, float))
    return np.stack([np.cos(a), np.sin(a)], axis=1)


def test_renumber_by_size():
    assert renumber_by_size(np.array([5, 5, -1, 2, 2, 2, 7])).tolist() == [1, 1, -1, 0, 0, 0, 2]


def test_dbscan_cosine_by_hand():
    # cosine distance 1 − cos: 10° → 0.015, 80° → 0.83; eps 0.3 joins the tight groups only
    labels = dbscan_labels(_angles([0, 10, 20, 120, 130, 250]), eps=0.3, min_samples=2)
    assert labels.tolist() == [0, 0, 0, 1, 1, -1]


def test_elbow_by_hand():
    # a tight group of 9 and one far point: k = ⌊0.1·10⌋ = 1 nearest neighbour each
    e = _angles([0, 1, 2, 3, 4, 5, 6, 7, 8, 90])
    d = 1 - e @ e.T
    np.fill_diagonal(d, np.inf)
    y = np.sort(d.min(axis=1))
    x = np.arange(10.0)
    dist = np.abs((y[-1] - y[0]) * (x - x[0]) - (x[-1] - x[0]) * (y - y[0]))
    assert elbow_eps(e) == pytest.approx(y[np.argmax(dist)])
    with pytest.raises(FaceForgeError, match="at least 3"):
        elbow_eps(e[:2])
    with pytest.raises(FaceForgeError, match="k must be"):
        elbow_eps(e, k=10)
