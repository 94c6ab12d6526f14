"""The quality estimator end to end on real faces: train, save, load, refuse what does not fit,
score folders and Parquets, filter without touching the inputs."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from faceforge.core.errors import FaceForgeError, ModelLoadError
from faceforge.io.images import load_image
from faceforge.models.embedders import create_embedder
from faceforge.pipeline import FacePipeline, embed_folder
from faceforge.quality.baselines import BASELINES
from faceforge.quality.estimator import QualityEstimator, to_score, train_estimator
from faceforge.quality.scorer import QualityScorer
from faceforge.quality.workflow import (contact_sheet, filter_parquet, quality_cut, score_parquet,
                                        train_from_folder)
from faceforge.vision.face import Face
from tests.conftest import DATA, LFW, need

PEOPLE = ["Alvaro_Uribe", "Amelie_Mauresmo", "Andre_Agassi", "Angelina_Jolie", "Ann_Veneman",
          "Arnold_Schwarzenegger", "Atal_Bihari_Vajpayee", "Bill_Gates"]
FAST = {"iterations": 60, "depth": 4, "early_stopping_rounds": 20}


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def faces_dir(tmp_path_factory) -> Path:
    """Eight real identities (8 images each), one of a single image, and one 'identity' of
    pure noise and face-free photos that yields no face at all."""
    root = tmp_path_factory.mktemp("quality") / "faces"
    for name in PEOPLE:
        src = need(LFW / "images" / name)
        (root / name).mkdir(parents=True)
        for f in sorted(src.glob("*.jpg"))[:8]:
            shutil.copy(f, root / name / f.name)
    (root / "Single_Image").mkdir()
    shutil.copy(need(LFW / "images" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg"), root / "Single_Image")
    noise = root / "Noise_Only"
    noise.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (160, 160, 3), dtype=np.uint8)).save(noise / "noise.png")
    shutil.copy(need(DATA / "nonface_imagenet" / "n01443537_goldfish.jpg"), noise)
    return root


@pytest.fixture(scope="module")
def pipeline() -> FacePipeline:
    return FacePipeline(embedder="dlib-r29", device="cpu")


@pytest.fixture(scope="module")
def trained(faces_dir, pipeline, tmp_path_factory):
    est, data = train_from_folder(pipeline, faces_dir, show_progress=False, val_fraction=0.25, **FAST)
    path = tmp_path_factory.mktemp("model") / "qaa"
    est.save(path)
    return est, data, path


def test_training_handles_single_image_and_noise_only_identities(trained):
    est, data, _ = trained
    assert "Noise_Only" not in set(data.identities)        # nothing detected there …
    assert {Path(s.path).parent.name for s in data.skipped} >= {"Noise_Only"}  # … and said so
    assert "Single_Image" in set(data.identities)
    m = est.manifest
    assert m["train"]["unlabelled_dropped"] >= 1           # the single image has no centre
    assert m["train"]["images"] + m["train"]["val_images"] + m["train"]["unlabelled_dropped"] == len(data.paths)
    assert m["backbone"] == "dlib-r29" and m["num_features"] == 58 and len(m["layers"]) == 29
    assert m["catboost"]["depth"] == 4 and m["catboost"]["loss_function"] == "RMSE"


def test_save_load_round_trip_predicts_the_same(trained):
    est, data, path = trained
    loaded = QualityEstimator.load(path.with_suffix(".cbm"))
    np.testing.assert_allclose(loaded.predict(data.features), est.predict(data.features), rtol=1e-6, atol=1e-9)
    assert json.loads(path.with_name("qaa.json").read_text())["weights_sha256"] == loaded.manifest["weights_sha256"]
    s = loaded.score(data.features)
    assert s.dtype == np.int32 and s.min() >= 0 and s.max() <= 100


def test_scores_round_and_clip():
    assert to_score(np.array([-0.2, 0.004, 0.006, 0.994, 0.996, 1.3])).tolist() == [0, 0, 1, 99, 100, 100]
    # label-range mapping: 0.9..0.98 stretched onto 0..100
    assert to_score(np.array([0.85, 0.9, 0.94, 0.9403, 0.9405, 0.98, 0.99]), 0.9, 0.98).tolist() == [0, 0, 50, 50, 51, 100, 100]


def test_score_range_comes_from_the_training_labels(trained):
    est, data, _ = trained
    lo, hi = est.manifest["score_range"]
    assert est.manifest["score_mapping"] == "label-range" and 0.5 < lo < hi <= 1.0
    p = est.predict(data.features)
    np.testing.assert_array_equal(est.score(data.features), to_score(p, lo, hi))
    # same order as the regressor's predictions (up to integer ties)
    s = est.score(data.features)
    assert np.all(np.diff(s[np.argsort(p, kind="stable")]) >= 0)


def test_too_few_labels_is_a_clear_error():
    with pytest.raises(FaceForgeError, match="too few"):
        train_estimator(np.ones((30, 4)), np.full(30, np.nan), np.arange(30), backbone="x",
                        layer_names=["a", "b"])


def test_refuses_a_mismatched_backbone(trained):
    est, _, path = trained
    loaded = QualityEstimator.load(path)
    other = create_embedder("dlib-r29", device="cpu")
    QualityScorer(other, loaded)  # same network, same weights: accepted
    with torch.no_grad():        # BatchNorm statistics changed (e.g. BN fine-tuning): refused
        other.model.bn1.running_mean += 0.1
    with pytest.raises(FaceForgeError, match="retrain"):
        QualityScorer(other, loaded)
    with pytest.raises(FaceForgeError, match="trained on 'dlib-r29'"):
        loaded.check("r50", loaded.manifest["layers"], "var")
    with pytest.raises(FaceForgeError, match="layout differs"):
        loaded.check("dlib-r29", loaded.manifest["layers"][:-1], "var")
    with pytest.raises(FaceForgeError, match="'kl'"):
        loaded.check("dlib-r29", loaded.manifest["layers"], "kl")
    with pytest.raises(FaceForgeError, match="quality features"):
        loaded.predict(np.zeros((2, 10)))
    with pytest.raises(FaceForgeError, match="trained on 'dlib-r29' features, not 'sface'"):
        QualityScorer(create_embedder("sface"), loaded)  # the float port is a network, but another one
    with pytest.raises(FaceForgeError, match="not a PyTorch network"):
        QualityScorer(create_embedder("sface-int8"), loaded)  # OpenCV's runtime


def test_broken_estimator_files(trained, tmp_path):
    _, _, path = trained
    with pytest.raises(ModelLoadError, match="needs both"):
        QualityEstimator.load(tmp_path / "missing")
    shutil.copy(path.with_name("qaa.json"), tmp_path / "bad.json")
    (tmp_path / "bad.cbm").write_bytes(b"not catboost")
    with pytest.raises(ModelLoadError, match="bad.cbm"):
        QualityEstimator.load(tmp_path / "bad.cbm")
    shutil.copy(path.with_name("qaa.cbm"), tmp_path / "bad.cbm")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="manifest"):
        QualityEstimator.load(tmp_path / "bad")


def test_quality_cut_by_hand():
    q = np.array([5, 1, 3, 3, 9, 7, 2, 8, 6, 4])
    assert quality_cut(q, drop_percent=20) == 3          # sorted[⌊10·0.2⌋] = sorted[2]; ties kept
    assert (q >= quality_cut(q, drop_percent=20)).sum() == 8
    assert quality_cut(q, drop_percent=0) == 1
    assert quality_cut(q, min_score=6.5) == 6.5
    with pytest.raises(FaceForgeError, match="exactly one"):
        quality_cut(q)
    with pytest.raises(FaceForgeError, match="\\[0, 100\\)"):
        quality_cut(q, drop_percent=100)


def test_score_folder_parquet_filter_and_sheet_leave_inputs_untouched(trained, faces_dir, pipeline, tmp_path):
    est, data, path = trained
    before = _snapshot(faces_dir)
    scorer = QualityScorer(pipeline.embedder, QualityEstimator.load(path))
    scored = FacePipeline(detector=pipeline.detector, embedder=pipeline.embedder, scorer=scorer)
    out = tmp_path / "scored.parquet"
    embed_folder(scored, faces_dir, out, select="central", show_progress=False)
    table = pq.read_table(out)
    q = table.column("quality").to_numpy()
    assert len(q) == len(data.paths) and q.dtype == np.int32
    # the same faces as training, scored by the estimator: equal to predicting the collected features
    order = {p: i for i, p in enumerate(data.paths)}
    expect = est.score(data.features)[[order[p] for p in table.column("path").to_pylist()]]
    np.testing.assert_array_equal(q, expect)
    # embeddings are the pipeline's own (the scorer does not change them)
    plain = FacePipeline(detector=pipeline.detector, embedder=pipeline.embedder)
    ref = tmp_path / "plain.parquet"
    embed_folder(plain, faces_dir, ref, select="central", show_progress=False)
    np.testing.assert_allclose(np.stack(table.column("embedding").to_pylist()),
                               np.stack(pq.read_table(ref).column("embedding").to_pylist()), atol=1e-6)

    # a Parquet without quality, re-aligned from its stored landmarks
    again = score_parquet(ref, tmp_path / "rescored.parquet", pipeline.embedder, scorer.estimator,
                          baselines=BASELINES)
    np.testing.assert_array_equal(again.column("quality").to_numpy(), q)
    lm = np.stack(again.column("landmarks").to_pylist()).reshape(-1, 5, 2)
    np.testing.assert_allclose(again.column("quality_face_size").to_numpy(), np.linalg.norm(lm[:, 1] - lm[:, 0], axis=1),
                               rtol=1e-6)
    np.testing.assert_array_equal(again.column("quality_detector_score").to_numpy(),
                                  again.column("det_score").to_numpy().astype(np.float64))
    first = again.slice(0, 1).to_pylist()[0]
    crop = pipeline.embedder.align(load_image(first["path"]),
                                   Face(np.zeros(4), 1.0, np.asarray(first["landmarks"], np.float32).reshape(5, 2)))
    assert first["quality_blur"] == pytest.approx(cv2.Laplacian(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())
    serfiq = again.column("quality_serfiq").to_numpy()
    assert ((serfiq > 0) & (serfiq <= 1)).all() and serfiq.std() > 0
    assert (again.column("quality_pose").to_numpy() <= 0).all()
    with pytest.raises(FaceForgeError, match="overwrite"):
        score_parquet(ref, ref, pipeline.embedder, scorer.estimator)
    with pytest.raises(FaceForgeError, match="unknown quality baselines"):
        score_parquet(ref, tmp_path / "x.parquet", pipeline.embedder, baselines=["sharpness"])

    frozen = _snapshot(tmp_path)
    summary = filter_parquet(out, tmp_path / "lists", drop_percent=10)
    keep = (tmp_path / "lists" / "keep.txt").read_text().split()
    drop = (tmp_path / "lists" / "drop.txt").read_text().split()
    assert len(keep) + len(drop) == len(q) and summary["kept"] == len(keep)
    assert sorted(keep + drop) == sorted(table.column("path").to_pylist())
    cut = np.sort(q)[int(len(q) * 0.1)]
    assert summary["cut"] == cut and len(keep) == int((q >= cut).sum())
    sheet = contact_sheet(out, tmp_path / "sheet.png", count=10)
    assert load_image(sheet).shape == (2 * (112 + 28), 8 * 112, 3)
    for name, sig in frozen.items():  # the scored Parquet and everything else already there
        assert _snapshot(tmp_path)[name] == sig, name
    assert _snapshot(faces_dir) == before
    with pytest.raises(FaceForgeError, match="quality score"):
        filter_parquet(ref, tmp_path / "x", drop_percent=5)
