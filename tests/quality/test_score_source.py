"""faceforge.quality.workflow.score_source: what it refuses, before any face is embedded."""
import pytest

from faceforge.core.errors import FaceForgeError
from faceforge.quality.workflow import score_source


class _Unused:
    """A pipeline that must not be touched."""

    def __getattr__(self, name):
        raise AssertionError(f"the pipeline was used ({name}) before the arguments were checked")


@pytest.mark.parametrize("baselines, message", [((), "nothing to compute"), (("blur", "shine"), "unknown quality baselines")])
def test_a_folder_with_nothing_valid_to_compute_is_refused_first(tmp_path, face_jpg, baselines, message):
    (tmp_path / "faces" / "a").mkdir(parents=True)
    (tmp_path / "faces" / "a" / "x.jpg").symlink_to(face_jpg)
    with pytest.raises(FaceForgeError, match=message):
        score_source(tmp_path / "faces", tmp_path / "scored.parquet", _Unused(), None, baselines)
    assert list(tmp_path.iterdir()) == [tmp_path / "faces"]
