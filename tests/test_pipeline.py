import numpy as np
import pytest

from faceforge import FacePipeline, FaceRecord, NoFaceError, Skip
from faceforge.io import list_images


@pytest.fixture(scope="module")
def pipe():
    return FacePipeline(detector="yunet", embedder="sface", batch_size=4)


def test_mixed_junk_folder_gives_records_and_skips_never_a_traceback(pipe, junk_dir):
    out = list(pipe.process_files(list_images(junk_dir)))
    recs = [r for r in out if isinstance(r, FaceRecord)]
    skips = {r.path.split("/")[-1]: r for r in out if isinstance(r, Skip)}
    assert [r.path.split("/")[-1] for r in recs] == ["good.jpg"]
    assert recs[0].embedding.shape == (128,)
    assert {k: v.kind for k, v in skips.items()} == {
        "truncated.jpg": "error", "corrupt.jpg": "error", "empty.png": "error", "text.jpg": "error",
        "coffee.png": "no_face", "tiny.png": "no_face"}
    assert "truncated" in skips["truncated.jpg"].reason


def test_two_faces_and_selection(pipe, two_faces_jpg):
    faces, emb = pipe.embed_file(two_faces_jpg)
    assert len(faces) == 2 and emb.shape == (2, 128)
    assert float(emb[0] @ emb[1]) < 0.3  # two different people
    largest, e1 = pipe.embed_file(two_faces_jpg, select="largest")
    assert len(largest) == 1 and np.allclose(e1[0], emb[0], atol=1e-5)


def test_no_face_raises_naming_the_file(pipe, junk_dir):
    with pytest.raises(NoFaceError, match="coffee.png"):
        pipe.embed_file(junk_dir / "coffee.png")


def test_any_detector_with_any_embedder(face_jpg):
    for det in ("mtcnn", "dlib"):
        faces, emb = FacePipeline(detector=det, embedder="dlib-r29", device="cpu").embed_file(face_jpg)
        assert len(faces) == 1 and emb.shape == (1, 128)
