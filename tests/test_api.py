"""faceforge.verify / represent / find on real photos, in every accepted image form."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import faceforge
from faceforge.core.errors import ImageReadError, NoFaceError
from faceforge.pipeline import FacePipeline
from faceforge.search.gallery import Records, open_gallery

from .conftest import lfw_image


def test_verify_same_and_different_people():
    a, b, c = lfw_image("Colin_Powell", 1), lfw_image("Colin_Powell", 2), lfw_image("Angelina_Jolie", 1)
    same = faceforge.verify(a, b)
    assert same.same and same.model == "sface" and same.threshold == 0.363 and same.score > 0.363
    other = faceforge.verify(a, c)
    assert not other.same and other.score < 0.363
    # the score is the cosine of the two faces' embeddings, computed independently here
    pipe = FacePipeline(detector="yunet", embedder="sface")
    ea, eb = pipe.embed_file(a, select="largest")[1][0], pipe.embed_file(b, select="largest")[1][0]
    assert same.score == pytest.approx(float(ea @ eb), abs=1e-5)
    # arrays and PIL images give the same answer as paths
    again = faceforge.verify(np.asarray(Image.open(a)), Image.open(b))
    assert again.score == pytest.approx(same.score, abs=1e-5)
    assert faceforge.verify(a, b, model="dlib-r29").threshold == 0.905
    assert set(same.to_dict()) == {"same", "score", "threshold", "model", "faces"}


def test_verify_with_the_ensemble_is_the_mean_of_both_cosines():
    a, b = lfw_image("Colin_Powell", 1), lfw_image("Colin_Powell", 2)
    fused = faceforge.verify(a, b, model="sface+dlib-r29")
    s1, s2 = faceforge.verify(a, b).score, faceforge.verify(a, b, model="dlib-r29").score
    assert fused.score == pytest.approx((s1 + s2) / 2, abs=1e-4) and fused.threshold == pytest.approx(0.6076)


def test_represent_gives_every_face(two_faces_jpg):
    reps = faceforge.represent(two_faces_jpg)
    assert len(reps) == 2 and reps[0].face.area >= reps[1].face.area
    assert all(r.embedding.shape == (128,) and abs(np.linalg.norm(r.embedding) - 1) < 1e-5 for r in reps)
    grey = np.asarray(Image.open(lfw_image("Colin_Powell", 1)).convert("L"))
    assert len(faceforge.represent(grey)) == 1


def test_bad_inputs_are_named(no_face_rgb, tmp_path):
    with pytest.raises(NoFaceError, match="no face"):
        faceforge.represent(no_face_rgb)
    with pytest.raises(ImageReadError, match="uint8"):
        faceforge.represent(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ImageReadError, match="not an image"):
        faceforge.verify(42, lfw_image("Colin_Powell", 1))
    (tmp_path / "x.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ImageReadError, match="x.jpg"):
        faceforge.represent(tmp_path / "x.jpg")


def test_find_in_a_gallery(tmp_path):
    uri = str(tmp_path / "g.db")
    pipe = FacePipeline(detector="yunet", embedder="sface")
    with open_gallery(uri) as g:
        for name, num in (("Colin_Powell", 1), ("Angelina_Jolie", 1), ("George_W_Bush", 1)):
            path = lfw_image(name, num)
            g.add(Records([name], [str(path)], [name], [0], pipe.embed_file(path, select="largest")[1]), "sface")
    hits = faceforge.find(lfw_image("Colin_Powell", 2), uri, k=3)
    assert len(hits) == 1 and [h.identity for h in hits[0]][0] == "Colin_Powell"
    assert hits[0][0].score > 0.363 > hits[0][1].score


def test_import_and_help_do_not_load_torch():
    """`import faceforge` and `faceforge --help` stay light: torch loads on first real use."""
    import subprocess
    import sys
    code = ("import sys, faceforge; from faceforge.cli.main import app; "
            "assert 'torch' not in sys.modules and 'cv2' not in sys.modules, sorted(sys.modules); "
            "faceforge.FacePipeline; assert 'torch' in sys.modules")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
