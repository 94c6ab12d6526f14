"""The person re-id task: body crops letterboxed, cameras from file names, unusable files
skipped with a record, and a real run on CUHK03 people through export and the embedder."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from faceforge.core.errors import FaceForgeError
from faceforge.io.bodies import camera_of, scan_body_folder
from faceforge.models.embedders import load_embedder
from faceforge.train.config import build_trainer
from faceforge.train.export import export_checkpoint
from faceforge.vision.body import FILL, letterbox

from ..conftest import DATA, need

REID = DATA / "reid_cuhk03"


def test_letterbox_by_hand():
    img = np.zeros((100, 40, 3), np.uint8)
    img[:] = (200, 10, 10)
    out = letterbox(img, 128, 64)
    # scale min(128/100, 64/40) = 1.28 → 128 × 51 (40 · 1.28 = 51.2), centred: columns 6..56
    assert out.shape == (128, 64, 3)
    assert (out[:, 6:57] == (200, 10, 10)).all()
    assert (out[:, :6] == FILL).all() and (out[:, 57:] == FILL).all()
    wide = letterbox(np.zeros((10, 40, 3), np.uint8), 128, 64)  # scale 1.6 → 16 × 64 at rows 56..71
    assert (wide[:56] == FILL).all() and (wide[56:72] == 0).all() and (wide[72:] == FILL).all()
    with pytest.raises(FaceForgeError, match="H×W×3"):
        letterbox(np.zeros((10, 10), np.uint8), 128, 64)


def test_camera_rules():
    assert camera_of("0001/0001_03.jpg") == 0 and camera_of("0001/0001_07.jpg") == 1
    assert camera_of("0002_c3s1_000451_03.jpg", "market1501") == 3
    with pytest.raises(FaceForgeError, match="x/holiday.jpg: no camera"):
        camera_of("x/holiday.jpg")
    with pytest.raises(FaceForgeError, match="unknown camera rule"):
        camera_of("0001_03.jpg", "duke")


def _people(tmp_path: Path, n: int) -> Path:
    """The first n CUHK03 training people, copied (the shared folder is read-only)."""
    src = need(REID / "train")
    root = tmp_path / "people"
    for person in sorted(p for p in src.iterdir() if p.is_dir())[:n]:
        shutil.copytree(person, root / person.name)
    return root


def test_scan_skips_unusable_files_with_a_record(tmp_path):
    root = _people(tmp_path, 2)
    person = sorted(root.iterdir())[0]
    good = sorted(person.glob("*.jpg"))[0]
    (person / f"{person.name}_98.jpg").write_bytes(good.read_bytes()[:200])  # truncated
    (person / "holiday.jpg").write_bytes(good.read_bytes())                   # no camera in the name
    folder = scan_body_folder(root)
    kinds = {Path(s["path"]).name: s["kind"] for s in folder.skipped}
    assert kinds == {f"{person.name}_98.jpg": "unreadable", "holiday.jpg": "no_camera"}
    assert all(s["reason"] for s in folder.skipped)
    assert len(folder.files) == sum(1 for _ in root.glob("*/*.jpg")) - 2
    assert set(folder.cameras.tolist()) == {0, 1}
    with pytest.raises(FaceForgeError, match="no images in person sub-folders"):
        scan_body_folder(tmp_path / "people" / person.name)


def _config(root: Path, out: Path, **data) -> dict:
    return {"task": "reid", "model": {"backbone": "osnet", "num_features": 64, "width": 0.25},
            "head": {"type": "adacos"},
            "data": {"root": str(root), "camera": "cuhk03", "input": [64, 32], "val_people": 0.25, **data},
            "train": {"output": str(out), "epochs": 1, "batch_size": 16, "optimizer": "adamw", "lr": 1e-3,
                      "best_metric": "val_map", "device": "cpu", "tensorboard": False}}


def test_reid_run_on_real_people_exports_a_body_embedder(tmp_path):
    root = _people(tmp_path, 8)
    (sorted(root.iterdir())[0] / "broken_00.jpg").write_bytes(b"not a jpeg")
    trainer = build_trainer(_config(root, tmp_path / "run"))
    assert len(trainer.dataset.classes) == 6  # 2 of 8 people held out for validation
    assert not set(trainer.dataset.people) & set(trainer.callbacks[-1].people.tolist())
    res = trainer.run()
    assert "val_rank1" in res["history"][-1] and 0 <= res["history"][-1]["val_map"] <= 1
    assert [Path(s["path"]).name for s in res["skipped"]] == ["broken_00.jpg"]
    assert json.loads((tmp_path / "run" / "skipped.json").read_text())[0]["kind"] == "unreadable"
    out = export_checkpoint(tmp_path / "run" / "best.pt", tmp_path / "body.safetensors", "safetensors")
    card = json.loads((tmp_path / "body.card.json").read_text())
    assert card["input"]["template"] == "body" and (card["input"]["size"], card["input"]["width"]) == (64, 32)
    emb = load_embedder(out["output"], device="cpu")
    crops = np.stack([trainer.dataset[i][0] for i in range(3)])
    vec = emb.embed_crops(crops)
    assert vec.shape == (3, 64) and np.allclose(np.linalg.norm(vec, axis=1), 1, atol=1e-5)
    with pytest.raises(FaceForgeError, match="64×32"):
        emb.embed_crops(np.zeros((1, 112, 112, 3), np.uint8))

    # the evaluation command on real test people: every number a share, the pictures written
    test_root = tmp_path / "test"
    for person in sorted(need(REID / "test").iterdir())[:12]:
        shutil.copytree(person, test_root / person.name)
    res = _cli("eval", "reid", out["output"], "--test", str(test_root), "--train", str(root), "--rerank",
               "--device", "cpu", "--out", str(tmp_path / "eval"), "--json")
    assert res["people"] == 12 and res["ranking"]["counted_queries"] == res["ranking"]["queries"] > 0
    for r in (res["ranking"], res["reranked"]):
        assert 0 < r["rank1"] <= r["rank5"] <= r["rank10"] <= 1 and 0 < r["mAP"] <= 1
    pairs = res["pair_accuracy"]
    assert pairs["pairs"] == 2 * pairs["same_person_pairs"] > 0
    assert pairs["card_threshold"] == card["thresholds"]["verify"]["value"] and "accuracy_at_card_threshold" in pairs
    assert (tmp_path / "eval" / "cmc.png").stat().st_size > 0 and (tmp_path / "eval" / "retrieval.png").exists()
    face = _cli("eval", "reid", "sface", "--test", str(test_root), "--json", code=2)
    assert "body images" in face["error"]

    from faceforge.pipeline import FacePipeline
    with pytest.raises(FaceForgeError, match="whole-image"):
        FacePipeline("yunet", emb)  # a body model behind a face detector
    assert FacePipeline("auto", emb).detector.name == "whole-image"

    # body crops into a real Milvus Lite gallery, identified with the card's threshold
    db = str(tmp_path / "bodies.db")
    enrolled = _cli("gallery", "enrol", str(test_root), "--gallery", db, "--model", out["output"], "--device", "cpu",
                    "--json")
    n_images = sum(1 for _ in test_root.glob("*/*.jpg"))
    assert enrolled["gallery"]["records"] == n_images and enrolled["gallery"]["model"] == card["name"]
    probe = sorted((test_root / sorted(p.name for p in test_root.iterdir())[0]).glob("*.jpg"))[0]
    unnamed = _cli("gallery", "identify", str(probe), "--gallery", db, "--json", code=2)
    assert "path of an exported model" in unnamed["error"]  # the gallery knows the card's name, not the file
    found = _cli("gallery", "identify", str(probe), "--gallery", db, "--model", out["output"], "--hits",
                 "--device", "cpu", "--json")
    assert found["threshold"] == card["thresholds"]["verify"]["value"]
    (face_row,) = found["results"][0]["faces"]
    h, w = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(probe)).shape[:2]
    assert face_row["box"] == [0, 0, w, h]
    assert face_row["hits"][0]["score"] == pytest.approx(1.0, abs=1e-4)  # the probe itself is enrolled


def _cli(*args: str, code: int = 0) -> dict:
    from typer.testing import CliRunner

    from faceforge.cli.main import app
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == code, res.output
    return json.loads(res.stdout)


def test_reid_balancing_gives_every_kept_person_exactly_t_images(tmp_path):
    root = _people(tmp_path, 6)
    trainer = build_trainer(_config(root, tmp_path / "run", balance=7, val_people=0.0))
    counts = np.bincount(trainer.dataset.targets)
    assert set(counts.tolist()) == {7}
    assert trainer.dataset.num_classes == len(counts) >= 5  # at most the smallest person dropped


def test_reid_config_errors(tmp_path):
    root = _people(tmp_path, 2)
    with pytest.raises(FaceForgeError, match=r"\[height, width\]"):
        build_trainer(_config(root, tmp_path / "run", input=[64]))
    with pytest.raises(FaceForgeError, match="val_people"):
        build_trainer(_config(root, tmp_path / "run", val_people=1.0))
    with pytest.raises(FaceForgeError, match="unknown camera rule"):
        build_trainer(_config(root, tmp_path / "run", camera="nope"))


def test_face_models_refuse_the_whole_image_detector():
    from faceforge.pipeline import FacePipeline
    from faceforge.vision.detectors import create_face_detector
    with pytest.raises(FaceForgeError, match="gives none"):
        FacePipeline("whole-image", "sface", device="cpu")
    assert FacePipeline("auto", "sface", device="cpu").detector.name == "yunet"
    with pytest.raises(FaceForgeError, match="finds no face landmarks"):
        create_face_detector("whole-image")


CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("reid_*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_committed_reid_configs_build(path, tmp_path):
    """Every benchmark row's config builds its trainer (on a few real people)."""
    from faceforge.train.config import load_yaml
    cfg = load_yaml(path)
    cfg["data"]["root"] = str(_people(tmp_path, 8))
    cfg["train"]["output"] = str(tmp_path / "run")
    trainer = build_trainer(cfg)
    assert trainer.input_spec["template"] == "body" and trainer.cfg.best_metric == "val_map"
    assert trainer.use_pk == ("triplet" in path.stem)


def test_data_loading_workers_do_not_change_the_result(tmp_path):
    """`faceforge train --num-workers 2` ends with the same weights as the in-process loader:
    each image's augmentation draws from its own (seed, epoch, index) generator, so which
    process decodes it does not matter."""
    import torch
    import yaml
    root = _people(tmp_path, 6)
    cfg = _config(root, tmp_path / "unused")
    cfg["data"]["augment"] = {"pad": 4, "erase": 0.5, "colour": 0.5}
    (tmp_path / "reid.yaml").write_text(yaml.safe_dump(cfg))
    states = []
    for workers in (0, 2):
        out = tmp_path / f"run{workers}"
        res = _cli("train", str(tmp_path / "reid.yaml"), "-o", str(out), "--num-workers", str(workers), "--json")
        assert res["history"][-1]["epoch"] == 1
        states.append(torch.load(out / "last.pt", weights_only=True)["backbone"])
    assert states[0].keys() == states[1].keys()
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k
