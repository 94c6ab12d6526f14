"""`faceforge quality train|score|filter` and `faceforge bn-finetune` as users run them."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from faceforge.cli.main import app
from faceforge.io.images import load_image
from tests.conftest import LFW, need

runner = CliRunner()
PEOPLE = ["Alvaro_Uribe", "Andre_Agassi", "Angelina_Jolie", "Ann_Veneman", "Bill_Gates", "Amelie_Mauresmo"]


def run(*args: str) -> dict:
    res = runner.invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "faces"
    for name in PEOPLE:
        (root / name).mkdir(parents=True)
        for f in sorted(need(LFW / "images" / name).glob("*.jpg"))[:7]:
            shutil.copy(f, root / name / f.name)
    return root


def test_quality_train_score_filter(faces, tmp_path):
    est = tmp_path / "model" / "qaa"
    t = run("quality", "train", str(faces), "-o", str(est), "--iterations", "40", "--val-fraction", "0.34", "--json")
    assert t["faces"] == 42 and Path(t["estimator"]).is_file() and Path(t["manifest"]).is_file()
    scored = tmp_path / "scored.parquet"
    s = run("quality", "score", str(faces), "-o", str(scored), "-e", str(est.with_suffix(".cbm")),
            "--baseline", "blur", "--baseline", "pose", "--select", "central", "--sheet", str(tmp_path / "s.png"), "--json")
    table = pq.read_table(scored)
    assert s["faces"] == table.num_rows == 42
    assert {"quality", "quality_blur", "quality_pose"} <= set(table.column_names)
    rescored = tmp_path / "rescored.parquet"  # from the Parquet: the raw output too, and the score is its mapping
    run("quality", "score", str(scored), "-o", str(rescored), "-e", str(est.with_suffix(".cbm")), "--json")
    again = pq.read_table(rescored)
    raw = again.column("quality_raw").to_numpy()
    from faceforge.quality.estimator import QualityEstimator
    np.testing.assert_array_equal(again.column("quality").to_numpy(),
                                  QualityEstimator.load(est.with_suffix(".cbm")).map_score(raw))
    assert 0.0 < raw.min() and raw.max() < 1.0
    assert not scored.with_name("scored.partial.parquet").exists()
    assert load_image(tmp_path / "s.png").shape[1] == 8 * 112
    f = run("quality", "filter", str(scored), "-o", str(tmp_path / "lists"), "--drop-percent", "10", "--json")
    assert f["kept"] + f["dropped"] == 42 and f["dropped"] >= 1
    b = run("quality", "filter", str(scored), "-o", str(tmp_path / "blur"), "--column", "quality_blur",
            "--min-score", "50", "--sheet", "--json")
    blur = table.column("quality_blur").to_numpy()
    assert b["kept"] == int((blur >= 50).sum()) and Path(b["sheet"]).is_file()
    # errors name the problem
    res = runner.invoke(app, ["quality", "score", str(faces), "-o", str(scored), "-e", str(est), "--json"])
    assert res.exit_code == 2 and "output file exists" in json.loads(res.stdout)["error"]
    res = runner.invoke(app, ["quality", "score", str(scored), "-o", str(tmp_path / "x.parquet"),
                              "-e", str(tmp_path / "nope"), "--json"])
    assert res.exit_code == 2 and "not found" in json.loads(res.stdout)["error"]


def test_bn_finetune_cli(faces, tmp_path):
    aligned = tmp_path / "aligned"
    names = []
    for person in PEOPLE[:3]:
        (aligned / person).mkdir(parents=True)
        for f in sorted((faces / person).glob("*.jpg"))[:6]:
            cv2.imwrite(str(aligned / person / f.name), cv2.resize(cv2.imread(str(f))[50:200, 50:200], (150, 150)))
            names.append(f"{person}/{f.name}")
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("".join(f"{a} {b} {int(a.split('/')[0] == b.split('/')[0])}\n"
                             for i, a in enumerate(names) for b in names[i + 1:i + 4]))
    cfg = tmp_path / "bn.yaml"
    cfg.write_text(f"""
model: {{backbone: dlib-r29}}
data: {{root: {aligned}}}
bn: {{epochs: 2, batch_size: 6, noise: 0.2, blur: 0.2, ood: 0.2}}
ood: {{source: fractals}}
val: {{pairs: {pairs}, root: {aligned}}}
""")
    res = run("bn-finetune", str(cfg), "-o", str(tmp_path / "run"), "--device", "cpu", "--json")
    assert [r["snapshot"] for r in res["history"]] == ["baseline", "epoch-001", "epoch-002"]
    assert all("val_acc" in r for r in res["history"]) and res["best"]["snapshot"] in {"baseline", "epoch-001", "epoch-002"}
    assert (tmp_path / "run" / "finetuned.safetensors").is_file()
    # the fine-tuned network loads as ordinary weights
    from faceforge.models.backbones import create_backbone
    from faceforge.train.config import load_weights
    load_weights(create_backbone("dlib-r29"), tmp_path / "run" / "finetuned.safetensors")
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"data: {{root: {aligned}}}\nbn: {{noise: 2}}\n")
    out = runner.invoke(app, ["bn-finetune", str(bad), "--json"])
    assert out.exit_code == 2 and "fraction" in json.loads(out.stdout)["error"]
