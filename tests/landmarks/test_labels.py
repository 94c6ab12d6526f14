import numpy as np
import pytest
from PIL import Image

from faceforge.core.errors import FaceForgeError
from faceforge.landmarks.labels import read_landmark_list


def _list(tmp_path, *lines):
    Image.new("RGB", (80, 80)).save(tmp_path / "a.jpg")
    p = tmp_path / "train.txt"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_reads_x_then_y_columns(tmp_path):
    (s,) = read_landmark_list(_list(tmp_path, "a.jpg 1 2 3 4 5 10 20 30 40 50"))
    assert s.path == tmp_path / "a.jpg" and s.line == 1
    np.testing.assert_array_equal(s.points, [[1, 10], [2, 20], [3, 30], [4, 40], [5, 50]])


@pytest.mark.parametrize("bad, message", [
    ("a.jpg 1 2 3 4 5 10 20 30 40", "line 2: expected a path and 10 coordinates, found 9"),
    ("a.jpg 1 2 3 4 5 10 20 30 40 x", "line 2: coordinates must be numbers"),
    ("a.jpg 1 2 3 4 5 10 20 30 40 nan", "line 2: coordinates must be finite"),
    ("gone.jpg 1 2 3 4 5 10 20 30 40 50", "line 2: image not found"),
])
def test_a_bad_line_names_the_list_and_the_line(tmp_path, bad, message):
    p = _list(tmp_path, "a.jpg 1 2 3 4 5 10 20 30 40 50", bad)
    with pytest.raises(FaceForgeError, match=message) as e:
        read_landmark_list(p)
    assert str(p) in str(e.value)


def test_empty_list_is_an_error(tmp_path):
    with pytest.raises(FaceForgeError, match="no faces"):
        read_landmark_list(_list(tmp_path, "# only a comment"))
