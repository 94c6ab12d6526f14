import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from faceforge.core.errors import FaceForgeError, ModelLoadError
from faceforge.landmarks.geometry import apply_matrix, fit_matrix
from faceforge.landmarks.heatmaps import gaussian_heatmaps
from faceforge.landmarks.labels import LandmarkSample
from faceforge.landmarks.landmarker import LandmarkCard, Landmarker, card_file
from faceforge.models.losses.heatmap import HeatmapLoss
from faceforge.train.config import build_trainer
from faceforge.train.export import export_checkpoint
from faceforge.train.landmarks import LandmarkAugment, LandmarkDataset, warp_face

from ..conftest import DATA, need
from .conftest import kill_9_then_resume

COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255]], np.uint8)
POINTS = np.array([[20, 30], [60, 30], [40, 45], [25, 62], [55, 62]], np.float32)  # eyes, nose, mouth


def _dots(size: int = 80, radius: int = 2) -> np.ndarray:
    img = np.zeros((size, size, 3), np.uint8)
    for (x, y), c in zip(POINTS.astype(int), COLOURS):
        img[y - radius:y + radius + 1, x - radius:x + radius + 1] = c
    return img


def _colour_centre(img: np.ndarray, colour: np.ndarray) -> np.ndarray:
    d = np.abs(img.astype(int) - colour).sum(axis=2)
    ys, xs = np.nonzero(d < 60)
    return np.array([xs.mean(), ys.mean()])


def test_flip_mirrors_the_image_and_swaps_left_and_right_points():
    img = _dots()
    m = fit_matrix(80, 80, 80, flip=True)
    out, pts = warp_face(img, POINTS, m, 80, flip=True)
    # by hand: x → 79 − x, then left eye ↔ right eye, left mouth ↔ right mouth
    np.testing.assert_allclose(pts, [[19, 30], [59, 30], [39, 45], [24, 62], [54, 62]], atol=1e-4)
    assert pts[0, 0] < pts[1, 0] and pts[3, 0] < pts[4, 0]  # "left" is the image-left point again
    np.testing.assert_allclose(_colour_centre(out, COLOURS[1]), pts[0], atol=0.6)  # the old right eye's dot
    np.testing.assert_allclose(_colour_centre(out, COLOURS[0]), pts[1], atol=0.6)
    np.testing.assert_allclose(_colour_centre(out, COLOURS[2]), pts[2], atol=0.6)


@pytest.mark.parametrize("seed", range(4))
def test_random_geometry_moves_points_with_the_pixels(seed):
    aug = LandmarkAugment(colour=0, gray=0, blur=0, flip=0.5)
    g = aug.geometry(np.random.default_rng(seed), 128)
    out, pts = warp_face(_dots(), POINTS, fit_matrix(80, 80, 128, **g), 128, g["flip"])
    order = [1, 0, 2, 4, 3] if g["flip"] else range(5)
    for k, src in enumerate(order):
        np.testing.assert_allclose(_colour_centre(out, COLOURS[src]), pts[k], atol=0.8)


def test_resize_only_matrix_by_hand():
    m = fit_matrix(80, 80, 128)  # scale 1.6 about the centres 39.5 → 63.5
    np.testing.assert_allclose(apply_matrix(np.array([[39.5, 39.5], [0, 0]], np.float32), m),
                               [[63.5, 63.5], [63.5 - 1.6 * 39.5, 63.5 - 1.6 * 39.5]], atol=1e-4)


def test_dataset_items_are_repeatable_per_generator_and_grayscale_is_grey(tmp_path):
    Image.fromarray(_dots()).save(tmp_path / "a.png")
    s = LandmarkSample(tmp_path / "a.png", POINTS, 1)
    ds = LandmarkDataset([s], size=64, augment=LandmarkAugment())
    a = ds.augmented_item(0, np.random.default_rng([3, 0, 0]))
    b = ds.augmented_item(0, np.random.default_rng([3, 0, 0]))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])  # the same (seed, epoch, index)
    c = ds.augmented_item(0, np.random.default_rng([3, 1, 0]))
    assert not np.array_equal(c[1], a[1])
    img, pts = ds[0]  # plain: resized only, 80 → 64 about the centre
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    np.testing.assert_allclose(pts, (POINTS - 39.5) * 0.8 + 31.5, atol=1e-4)
    grey = LandmarkDataset([s], size=64, augment=LandmarkAugment(gray=1.0, colour=0, blur=0))
    img, _ = grey.augmented_item(0, np.random.default_rng(0))
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])


def test_heatmap_loss_by_hand():
    points = torch.tensor([[[3.0, 2.0]]])
    zeros = torch.zeros(1, 2, 1, 8, 8)  # two heads, one point, 8×8
    # the target's squared values summed over the grid, point by point: Σ exp(−d²/σ²), σ = 2
    sq = sum(math.exp(-((x - 3) ** 2 + (y - 2) ** 2) / 4.0) for x in range(8) for y in range(8))
    assert HeatmapLoss(2.0)(zeros, points).item() == pytest.approx(2 * sq / 64, rel=1e-5)
    exact = gaussian_heatmaps(points, 8, 2.0)[:, None].expand(1, 2, 1, 8, 8)
    assert HeatmapLoss(2.0)(exact, points).item() == pytest.approx(0.0, abs=1e-12)


def test_trimmed_loss_leaves_out_the_worst_faces():
    far = torch.full((4, 1, 2), -1000.0)  # targets that are zero everywhere on the grid
    maps = torch.stack([torch.full((2, 1, 4, 4), c) for c in (1.0, 2.0, 3.0, 10.0)])  # two heads
    assert HeatmapLoss(trim=0.0)(maps, far).item() == pytest.approx(2 * (1 + 4 + 9 + 100) / 4)
    assert HeatmapLoss(trim=0.25)(maps, far).item() == pytest.approx(2 * (1 + 4 + 9) / 3)  # ⌊0.25·4⌋ = 1 left out
    with pytest.raises(ValueError):
        HeatmapLoss(trim=1.0)


def _landmark_config(tmp_path, out, **train) -> dict:
    lines = need(DATA / "landmarks5" / "train.txt").read_text().splitlines()[:40]
    (tmp_path / "marks.txt").write_text("\n".join(lines) + "\n")
    return {"task": "landmarks",
            "model": {"network": "hourglass", "input_size": 32, "channels": 8, "stacks": 1},
            "loss": {"sigma": 1.0, "trim": 0.1},
            "data": {"list": str(tmp_path / "marks.txt"), "root": str(DATA / "landmarks5"), "val_fraction": 0.2},
            "train": {"output": str(out), "epochs": 2, "batch_size": 8, "device": "cpu", "checkpoint_every": 1,
                      **train}}


def test_a_landmark_run_on_real_labels_trains_validates_and_keeps_the_best(tmp_path):
    t = build_trainer(_landmark_config(tmp_path, tmp_path / "run", epochs=3, lr=3e-3))
    assert len(t.dataset) == 32 and t.steps_per_epoch == 4  # 40 faces, 8 held out for validation
    hist = t.fit()
    assert len(hist) == 3 and hist[-1]["loss"] < hist[0]["loss"]
    assert all(0 <= r["val_auc"] <= 1 and r["val_nme"] > 0 for r in hist)
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert best["identity"]["task"] == "landmarks" and best["identity"]["network"] == "hourglass"


def test_landmark_training_resumes_after_kill_9_with_the_same_weights(tmp_path):
    ref = _landmark_config(tmp_path, tmp_path / "ref", epochs=3)
    run = _landmark_config(tmp_path, tmp_path / "run", epochs=3)
    kill_9_then_resume(ref, run, tmp_path, total_steps=12, parts=("backbone",))


def test_a_bad_label_line_stops_the_run_before_training(tmp_path):
    cfg = _landmark_config(tmp_path, tmp_path / "run")
    p = Path(cfg["data"]["list"])
    lines = p.read_text().splitlines()
    lines[6] = lines[6].rsplit(" ", 1)[0]  # one coordinate missing on line 7
    p.write_text("\n".join(lines))
    with pytest.raises(FaceForgeError, match="line 7: expected a path and 10 coordinates") as e:
        build_trainer(cfg)
    assert str(p) in str(e.value)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small landmark network trained for a few steps on real labels, exported."""
    tmp = tmp_path_factory.mktemp("lm")
    cfg = _landmark_config(tmp, tmp / "run", epochs=1)
    build_trainer(cfg).fit()
    res = export_checkpoint(tmp / "run" / "best.pt", tmp / "tiny.safetensors", "safetensors")
    return Path(res["output"])


def test_export_writes_weights_and_a_card_that_load_back(exported):
    card = LandmarkCard.load(card_file(exported))
    assert card.network == "hourglass" and card.input_size == 32 and card.weights == exported.name
    shape = np.array(card.mean_shape)
    assert shape.shape == (5, 2) and shape[0, 0] < shape[2, 0] < shape[1, 0]  # left eye, nose, right eye
    assert "val_auc" in card.metrics
    lm = Landmarker.load(exported)
    pts, conf = lm.predict_crops(np.zeros((3, 32, 32, 3), np.uint8))
    assert pts.shape == (3, 5, 2) and conf.shape == (3, 5)


class _AtMeanShape(torch.nn.Module):
    """A stand-in network whose heatmaps always peak at the card's mean shape."""
    num_points = 5

    def __init__(self, shape: np.ndarray, size: int) -> None:
        super().__init__()
        self.shape, self.size = torch.tensor(shape, dtype=torch.float32), size

    preprocess = staticmethod(lambda crops: torch.zeros(len(crops), 3, 1, 1))

    def forward(self, x):
        return gaussian_heatmaps(self.shape.expand(len(x), 5, 2), self.size, 2.0)[:, None]


def test_the_landmark_stage_maps_its_points_back_into_the_image(exported, face_jpg):
    """A network that answers the mean shape must give back (about) the detector's own points:
    the crop puts them on the mean shape, and the inverse map brings the answer back."""
    from faceforge.io import load_image
    from faceforge.pipeline import FacePipeline
    from faceforge.vision.detectors import create_detector
    card = LandmarkCard.load(card_file(exported))
    lm = Landmarker(_AtMeanShape(np.array(card.mean_shape), card.input_size), card)
    image = load_image(face_jpg)
    plain = create_detector("yunet").detect(image)
    faces = lm.refine(image, plain)
    iod = np.linalg.norm(plain[0].landmarks[0] - plain[0].landmarks[1])
    err = np.linalg.norm(faces[0].landmarks - plain[0].landmarks, axis=1) / iod
    assert err.max() < 0.1, err  # what a similarity fit of five points leaves
    assert np.array_equal(faces[0].box, plain[0].box) and faces[0].detector == f"yunet+{card.name}"
    pipe = FacePipeline("yunet", "sface", device="cpu", landmarker=exported)  # the real network, wired in
    assert pipe.detector.name == "yunet+tiny"
    import copy
    assert copy.copy(pipe.detector).name == "yunet+tiny"
    # a network that finds nothing (all heatmaps zero: confidence 0) leaves the detector's face as it was
    blind = Landmarker(_Blank(card.input_size), card)
    (same,) = blind.refine(image, plain)
    assert same is plain[0]


class _Blank(torch.nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    preprocess = staticmethod(lambda crops: torch.zeros(len(crops), 3, 1, 1))

    def forward(self, x):
        return torch.zeros(len(x), 1, 5, self.size, self.size)


def test_landmark_weights_that_do_not_fit_their_card_are_refused(exported, tmp_path):
    import shutil
    bad = tmp_path / "bad.safetensors"
    shutil.copy(exported, bad)
    card = LandmarkCard.load(card_file(exported))
    card.network_kwargs = {**card.network_kwargs, "channels": 16}
    card.save(card_file(bad))
    with pytest.raises(ModelLoadError, match="do not fit hourglass") as e:
        Landmarker.load(bad)
    assert str(bad) in str(e.value)
    with pytest.raises(ModelLoadError, match="landmark weights not found"):
        Landmarker.load(tmp_path / "none.safetensors")


def _cli(*args: str):
    from typer.testing import CliRunner

    from faceforge.cli.main import app
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_cli_predict_draws_points_and_eval_reports_nme(exported, tmp_path):
    photos = sorted(need(DATA / "small_ids" / "test").glob("*.jpg"))[:2]
    res = _cli("landmarks", "predict", *map(str, photos), str(tmp_path / "junk.jpg"), "-o", str(tmp_path / "drawn"),
               "--landmarker", str(exported), "--json")
    assert [bool(r.get("faces")) for r in res[:2]] == [True, True] and "error" in res[2]
    assert all(Path(r["drawn"]).is_file() for r in res[:2])
    assert res[0]["faces"][0]["detector"] in ("yunet+tiny", "yunet")  # a one-epoch network may be unsure
    lines = need(DATA / "landmarks5" / "test.txt").read_text().splitlines()
    (tmp_path / "test.txt").write_text("\n".join(f"{DATA}/landmarks5/{line}" for line in lines[:12]) + "\n")
    (tmp_path / "fit.txt").write_text("\n".join(f"{DATA}/landmarks5/{line}" for line in lines[12:24]) + "\n")
    r = _cli("landmarks", "eval", str(tmp_path / "test.txt"), "--detector", "yunet", "--offset-from",
             str(tmp_path / "fit.txt"), "--ced", str(tmp_path / "ced.png"), "--json")
    assert r["faces"] == 12 and r["found"] >= 10 and 0 < r["raw"]["nme"] < 0.3
    assert set(r["raw"]["per_point"]) == {"left_eye", "right_eye", "nose", "left_mouth", "right_mouth"}
    assert (tmp_path / "ced.png").stat().st_size > 0 and "offset_corrected" in r
    r = _cli("landmarks", "eval", str(tmp_path / "test.txt"), "--landmarker", str(exported), "--json")
    assert r["found"] == 12 and r["predictor"] == "tiny"
