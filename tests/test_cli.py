"""The CLI as users run it: JSON outputs, bad input, resumable embedding after kill -9."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from faceforge.cli.main import app
from faceforge.io.embeddings import embedding_matrix, read_embeddings

from .conftest import LFW, lfw_image

runner = CliRunner()


def run(*args: str) -> dict | list:
    res = runner.invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_help_and_models():
    assert "verify" in runner.invoke(app, ["--help"]).output
    assert {"yunet", "mtcnn", "dlib"} <= set(run("models", "--json")["detectors"])


def test_detect_json_with_bad_files(junk_dir, two_faces_jpg):
    out = run("detect", str(two_faces_jpg), str(junk_dir / "truncated.jpg"), str(junk_dir / "coffee.png"), "--json")
    assert len(out[0]["faces"]) == 2 and len(out[0]["faces"][0]["landmarks"]) == 5
    assert "truncated" in out[1]["error"]
    assert out[2]["faces"] == []


@pytest.mark.parametrize("model", ["sface", "dlib-r29"])
def test_verify(model):
    a, b, c = lfw_image("Colin_Powell", 1), lfw_image("Colin_Powell", 5), lfw_image("George_W_Bush", 1)
    assert run("verify", str(a), str(b), "--model", model, "--json")["same_person"] is True
    assert run("verify", str(a), str(c), "--model", model, "--json")["same_person"] is False


def test_verify_bad_input_is_an_error_not_a_traceback(junk_dir, face_jpg):
    res = runner.invoke(app, ["verify", str(face_jpg), str(junk_dir / "coffee.png"), "--json"])
    assert res.exit_code == 2 and "no face found" in json.loads(res.stdout)["error"]
    res = runner.invoke(app, ["verify", str(face_jpg), str(junk_dir / "empty.png")])
    assert res.exit_code == 2 and "empty" in res.output and res.exception is None or isinstance(res.exception, SystemExit)


def _identity_folder(tmp_path: Path, n_people: int = 12, per: int = 4) -> Path:
    root = tmp_path / "people"
    people = sorted(p for p in (LFW / "images").iterdir() if p.is_dir() and len(list(p.iterdir())) >= per)[:n_people]
    for p in people:
        (root / p.name).mkdir(parents=True)
        for img in sorted(p.iterdir())[:per]:
            (root / p.name / img.name).symlink_to(img)
    return root


def _embed_cmd(folder: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "faceforge.cli.main", "embed", str(folder), "-o", str(out),
            "--batch-size", "2", "--checkpoint-every", "2", "--json"]


def test_embed_resumes_after_kill_and_loses_nothing(tmp_path, lfw_root):
    folder = _identity_folder(tmp_path)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8junk")
    clean = tmp_path / "clean.parquet"
    subprocess.run(_embed_cmd(folder, clean), check=True, capture_output=True)

    out = tmp_path / "killed.parquet"
    parts = tmp_path / "killed.parquet.parts"
    proc = subprocess.Popen(_embed_cmd(folder, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("part-*.parquet"))) < 3:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "the run finished before it could be killed"
    n_parts = len(list(parts.glob("part-*.parquet")))
    assert n_parts >= 3

    res = json.loads(subprocess.run(_embed_cmd(folder, out), check=True, capture_output=True, text=True).stdout)
    assert res["already_done"] >= 2 * 3 // 2  # the finished parts were not redone
    a, b = read_embeddings(clean), read_embeddings(out)
    key = lambda t: sorted(zip(t.column("path").to_pylist(), t.column("face_index").to_pylist()))
    assert key(b) == key(a) and len(set(key(b))) == len(key(b))  # nothing lost, nothing twice
    order_a = np.argsort(a.column("path").to_pylist())
    order_b = np.argsort(b.column("path").to_pylist())
    assert np.allclose(embedding_matrix(a)[order_a], embedding_matrix(b)[order_b], atol=1e-6)
    assert set(b.column("identity").to_pylist()) == {p.name for p in folder.iterdir() if p.is_dir()}
    skips = [json.loads(l) for l in (tmp_path / "killed.parquet.skips.jsonl").read_text().splitlines()]
    assert [s["path"].endswith("broken.jpg") for s in skips] == [True]


def test_embed_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["embed", str(tmp_path / "empty"), "-o", str(tmp_path / "x.parquet"), "--json"])
    assert res.exit_code == 2 and "no image files" in json.loads(res.stdout)["error"]


def test_similarity_matrix(tmp_path, junk_dir):
    folder = _identity_folder(tmp_path, n_people=3, per=2)
    (folder / "zz_junk.jpg").write_bytes((junk_dir / "corrupt.jpg").read_bytes())
    png = tmp_path / "m.png"
    out = run("similarity", str(folder), "-o", str(png), "--select", "central", "--json")
    assert png.stat().st_size > 10_000 and out["labels"] == sorted(out["labels"])
    m = np.array(out["matrix"])
    assert m.shape == (6, 6) and np.allclose(np.diag(m), 1, atol=1e-4)
    same = [m[i, i + 1] for i in (0, 2, 4)]
    assert min(same) > np.max(m[0, 2:])  # same person beats every other person
    assert out["skipped"][0]["path"].endswith("zz_junk.jpg")


@pytest.fixture()
def mini_lfw(tmp_path, lfw_root) -> Path:
    """Two folds of 10 same + 10 different official pairs, images read in place."""
    lines = (lfw_root / "pairs.txt").read_text().splitlines()[1:]
    body = []
    for fold in range(2):
        chunk = lines[fold * 600:(fold + 1) * 600]
        body += chunk[:10] + chunk[300:310]
    root = tmp_path / "lfw"
    root.mkdir()
    (root / "images").symlink_to(lfw_root / "images")
    (root / "pairs.txt").write_text("2 10\n" + "\n".join(body) + "\n")
    return root


@pytest.mark.filterwarnings("ignore:FPR .* is below")
def test_eval_lfw_cli(mini_lfw, tmp_path):
    js, png = tmp_path / "lfw.json", tmp_path / "roc.png"
    res = runner.invoke(app, ["eval", "lfw", "--root", str(mini_lfw), "--model", "sface",
                              "--json", str(js), "--roc", str(png)])
    assert res.exit_code == 0, res.output
    r = json.loads(js.read_text())
    assert r["pairs"] == 40 and r["folds"] == 2 and r["accuracy_mean"] >= 0.95
    # 20 negatives per run: FPR 0.1 is measurable, 0.01 is not (reported as NaN, never a guess)
    assert 0 < r["tpr_at_fpr"]["0.1"]["tpr"] <= 1 and np.isnan(r["tpr_at_fpr"]["0.01"]["tpr"])
    assert png.stat().st_size > 10_000


def test_demo_without_lfw(tmp_path):
    out = run("demo", "-o", str(tmp_path / "demo"), "--no-lfw", "--json")
    for model in ("sface", "dlib-r29"):
        r = out["models"][model]
        assert r["no_face"] == ["cat", "coffee"]
        assert r["correct_decisions"] == "15/15"
    assert (tmp_path / "demo" / "verification.json").is_file()
    assert (tmp_path / "demo" / "similarity_sface.png").stat().st_size > 10_000
    g = out["gallery"]
    assert g["faces_added"] == 2 and g["records"] == 2
    assert {n: r if isinstance(r, str) else r["identity"] for n, r in g["identified"].items()} == {
        "astronaut_mirrored": "Eileen Collins (astronaut)", "astronaut_small": "Eileen Collins (astronaut)",
        "astronaut_darker": "Eileen Collins (astronaut)", "cameraman_mirrored": "cameraman",
        "cat": "no face", "coffee": "no face"}
    again = run("demo", "-o", str(tmp_path / "demo"), "--no-lfw", "--json")["gallery"]
    assert again["faces_added"] == 0 and again["records"] == 2  # a rerun stores nothing twice
