"""Quality labels recomputed by hand."""
import numpy as np
import pytest

from faceforge.core.errors import FaceForgeError
from faceforge.quality.labels import head_labels, leave_one_out_labels


def _cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_leave_one_out_by_hand():
    rng = np.random.default_rng(3)
    e = rng.normal(size=(7, 5))
    ids = np.array(["a", "b", "a", "c", "a", "b", "d"])
    got = leave_one_out_labels(e, ids)
    u = e / np.linalg.norm(e, axis=1, keepdims=True)
    for i in range(len(e)):
        others = [u[j] for j in range(len(e)) if j != i and ids[j] == ids[i]]
        if not others:
            assert np.isnan(got[i]), i  # single-image identities have no centre
        else:
            assert got[i] == pytest.approx(_cos(u[i], np.mean(others, axis=0)), abs=1e-12)
    assert np.isnan(got[[3, 6]]).all() and np.isfinite(got[[0, 1, 2, 4, 5]]).all()


def test_leave_one_out_two_images_is_their_cosine_not_half_angle():
    e = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert leave_one_out_labels(e, ["x", "x"]).tolist() == pytest.approx([0.0, 0.0])


def test_leave_one_out_scale_free_and_opposite_vectors():
    e = np.array([[3.0, 0.0], [0.0, 0.5], [-2.0, 0.0], [0.0, -7.0], [1.0, 1.0]])
    got = leave_one_out_labels(e, ["p", "p", "p", "p", "q"])
    # the other three of image 0, as unit rows, sum to (-1, 0): cosine −1; of image 1 to (0, -1)
    assert got[0] == pytest.approx(-1.0) and got[1] == pytest.approx(-1.0)
    assert np.isnan(got[4])


@pytest.mark.parametrize("bad", [np.zeros((3, 4)), np.full((3, 4), np.nan)])
def test_zero_or_nan_embeddings_are_refused(bad):
    with pytest.raises(FaceForgeError, match="zero or not finite"):
        leave_one_out_labels(bad, ["a", "a", "b"])


def test_mismatched_lengths_are_refused():
    with pytest.raises(FaceForgeError, match="identities"):
        leave_one_out_labels(np.eye(3), ["a", "b"])


def test_head_labels_by_hand():
    rng = np.random.default_rng(0)
    e, w = rng.normal(size=(6, 4)), rng.normal(size=(3, 4))
    y = np.array([0, 2, 1, 1, 0, 2])
    got = head_labels(e, y, w)
    assert got.tolist() == pytest.approx([_cos(e[i], w[y[i]]) for i in range(6)])
    with pytest.raises(FaceForgeError, match="class indices"):
        head_labels(e, y + 1, w)
    with pytest.raises(FaceForgeError, match="does not fit"):
        head_labels(e, y, w[:, :3])
