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

from .conftest import DATA, LFW, lfw_image

runner = CliRunner()


def run(*args: str) -> dict | list:
    res = runner.invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_help_and_models():
    assert "verify" in runner.invoke(app, ["--help"]).output
    assert {"yunet", "mtcnn", "dlib"} <= set(run("models", "--json")["detectors"])


@pytest.mark.parametrize("module", ["faceforge", "faceforge.cli.main"])
def test_python_dash_m_knows_every_command(module):
    for group in ("quality", "curate", "gallery", "eval", "landmarks"):
        res = subprocess.run([sys.executable, "-m", module, group, "--help"], capture_output=True, text=True,
                             timeout=120)
        assert res.returncode == 0 and "Usage" in res.stdout, (module, group, res.stderr[-500:])


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


def _embed_cmd(folder: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "faceforge.cli.main", "embed", str(folder), "-o", str(out),
            "--batch-size", "1", "--checkpoint-every", "1", "--json", *extra]


def _faces(table) -> dict[tuple[str, int], np.ndarray]:
    return dict(zip(zip(table.column("path").to_pylist(), table.column("face_index").to_pylist()),
                    embedding_matrix(table)))


def _multi_face_folder(tmp_path: Path) -> Path:
    """One-face LFW photos interleaved with two-face photos (and a large one), so that kills
    land between files and between the faces of one file."""
    root = tmp_path / "people"
    two = [DATA / "small_ids" / "test" / n for n in ("obama_and_biden.jpg", "kit_with_rose.jpg")]
    singles = [lfw_image(n, k) for n in ("Colin_Powell", "George_W_Bush", "Tony_Blair") for k in (1, 2, 3)]
    big = next(iter(sorted((DATA / "small_ids" / "train" / "obama").iterdir())))
    for i, src in enumerate(singles):
        (root / f"p{i % 3}").mkdir(parents=True, exist_ok=True)
        (root / f"p{i % 3}" / f"{i:02d}_one.jpg").symlink_to(src)
        (root / f"p{i % 3}" / f"{i:02d}_two.jpg").symlink_to(two[i % 2])
    (root / "p0" / "99_large.jpg").symlink_to(big)
    (root / "broken.jpg").write_bytes(b"\xff\xd8junk")
    return root


@pytest.mark.slow
def test_embed_killed_again_and_again_loses_no_face(tmp_path, lfw_root):
    folder = _multi_face_folder(tmp_path)
    clean = tmp_path / "clean.parquet"
    subprocess.run(_embed_cmd(folder, clean), check=True, capture_output=True)
    expected = _faces(read_embeddings(clean))
    per_file: dict[str, int] = {}
    for path, _ in expected:
        per_file[path] = per_file.get(path, 0) + 1
    assert max(per_file.values()) >= 2 and sum(n > 1 for n in per_file.values()) >= 9

    out, parts = tmp_path / "killed.parquet", tmp_path / "killed.parquet.parts"
    rng = np.random.default_rng(0)
    kills, seen_parts = 0, {}
    while not out.exists():
        before = len(list(parts.glob("part-*.parquet")))
        proc = subprocess.Popen(_embed_cmd(folder, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # every other run dies as soon as a new part appears (right after a checkpoint), the others
        # a random moment later (anywhere: while decoding, between the faces of a file, ...)
        wait_after = 0.0 if kills % 2 == 0 else float(rng.uniform(0.0, 0.4))
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and len(list(parts.glob("part-*.parquet"))) <= before:
            time.sleep(0.005)
        time.sleep(wait_after)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        for p in parts.glob("part-*.parquet"):
            seen_parts[p.name] = read_embeddings(p).column("path").to_pylist()
        assert kills < 40, "no progress between kills"
    assert kills >= 6
    for name, paths in seen_parts.items():  # a part only ever holds whole files
        for path in set(paths):
            assert paths.count(path) == per_file[path], (name, path)
    got = _faces(read_embeddings(out))
    assert sorted(got) == sorted(expected)  # nothing lost, nothing twice, face by face
    for key, e in expected.items():
        assert np.allclose(got[key], e, atol=1e-6), key
    skips = [json.loads(line) for line in (tmp_path / "killed.parquet.skips.jsonl").read_text().splitlines()]
    assert [s["path"].endswith("broken.jpg") for s in skips] == [True]


def test_embed_refuses_to_mix_models_and_overwrites_when_asked(tmp_path, face_jpg):
    folder = tmp_path / "one" / "aaron"
    folder.mkdir(parents=True)
    (folder / "a.jpg").symlink_to(face_jpg)
    out = tmp_path / "same.parquet"
    run("embed", str(tmp_path / "one"), "-o", str(out), "--json")
    before = out.read_bytes()
    res = runner.invoke(app, ["embed", str(tmp_path / "one"), "-o", str(out), "--model", "dlib-r29", "--json"])
    assert res.exit_code == 2 and "'sface'" in json.loads(res.stdout)["error"] and "--overwrite" in res.stdout
    assert out.read_bytes() == before  # untouched
    res = run("embed", str(tmp_path / "one"), "-o", str(out), "--model", "dlib-r29", "--overwrite", "--json")
    assert res["faces_written"] == 1 and read_embeddings(out).column("model").to_pylist() == ["dlib-r29"]


def test_embed_names_that_are_not_utf8(tmp_path, face_jpg, two_faces_jpg):
    root = Path(os.fsdecode(bytes(tmp_path) + b"/latin1"))
    person = root / os.fsdecode(b"Jos\xe9")                 # a Latin-1 folder name
    person.mkdir(parents=True)
    (person / os.fsdecode(b"caf\xe9.jpg")).symlink_to(face_jpg)
    (person / "b.jpg").symlink_to(two_faces_jpg)
    out = tmp_path / "e.parquet"
    res = run("embed", str(root), "-o", str(out), "--json")
    assert res["faces_written"] == 3 and res["skipped"] == 0
    t = read_embeddings(out)
    assert set(t.column("identity").to_pylist()) == {"Jos\\xe9"}
    assert any(p.endswith("Jos\\xe9/caf\\xe9.jpg") for p in t.column("path").to_pylist())
    assert run("embed", str(root), "-o", str(out), "--json")["already_done"] == 2  # the rerun finds them
    from faceforge.core.files import text_path
    stored = next(p for p in t.column("path").to_pylist() if "caf" in p)
    assert text_path(stored).read_bytes() == face_jpg.read_bytes()  # the text leads back to the file


def test_embed_reads_pgm_gif_and_ppm_folders(tmp_path):
    from PIL import Image
    root = tmp_path / "orl"
    for i, (name, fmt) in enumerate((("Colin_Powell", "pgm"), ("George_W_Bush", "gif"), ("Tony_Blair", "ppm"))):
        (root / name).mkdir(parents=True)
        im = Image.open(lfw_image(name, 1))
        (im.convert("L") if fmt == "pgm" else im).save(root / name / f"1.{fmt}")
    res = run("embed", str(root), "-o", str(tmp_path / "e.parquet"), "--select", "central", "--json")
    assert res["files"] == 3 and res["faces_written"] == 3 and res["skipped"] == 0
    only_pgm = root / "Colin_Powell"
    assert run("embed", str(only_pgm), "-o", str(tmp_path / "p.parquet"), "--select", "central",
               "--json")["faces_written"] == 1


def _without_file_permission_override() -> list[str]:
    """A command prefix under which chmod 000 really denies reading (root ignores it)."""
    if os.geteuid() != 0:
        return []
    import shutil
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot make a file unreadable")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def test_embed_retries_skips_that_may_succeed_now(tmp_path, face_jpg):
    prefix = _without_file_permission_override()
    root = tmp_path / "people"
    (root / "a").mkdir(parents=True)
    locked, changed = root / "a" / "locked.jpg", root / "a" / "changed.jpg"
    locked.write_bytes(face_jpg.read_bytes())
    changed.write_bytes(b"\xff\xd8 not yet a photo")
    locked.chmod(0)
    out = tmp_path / "e.parquet"
    first = json.loads(subprocess.run(prefix + _embed_cmd(root, out), check=True, capture_output=True,
                                      text=True).stdout)
    assert first["skipped"] == 2 and first["faces_written"] == 0
    reasons = {Path(s["path"]).name: s for s in map(json.loads, Path(first["skip_log"]).read_text().splitlines())}
    assert reasons["locked.jpg"]["kind"] == "unreadable" and "permission denied" in reasons["locked.jpg"]["reason"]
    locked.chmod(0o644)                           # access granted
    changed.write_bytes(face_jpg.read_bytes())    # the file was fixed
    again = json.loads(subprocess.run(prefix + _embed_cmd(root, out), check=True, capture_output=True,
                                      text=True).stdout)
    assert again["new_files"] == 2 and again["faces_written"] == 2 and again["skipped"] == 0
    assert len(read_embeddings(out)) == 2
    assert Path(again["skip_log"]).read_text() == ""  # nothing is skipped any more


def test_embed_interrupted_says_how_to_resume(tmp_path, lfw_root):
    folder = _identity_folder(tmp_path, n_people=6, per=4)
    out, parts = tmp_path / "e.parquet", tmp_path / "e.parquet.parts"
    # a test run launched in the background inherits SIGINT ignored, and Python then keeps
    # ignoring it: give the child the default disposition, as a terminal's process has
    proc = subprocess.Popen(_embed_cmd(folder, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not list(parts.glob("part-*.parquet")):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in stderr and "rerun the same command" in stderr
    res = json.loads(subprocess.run(_embed_cmd(folder, out), check=True, capture_output=True, text=True).stdout)
    t = read_embeddings(out)
    keys = list(zip(t.column("path").to_pylist(), t.column("face_index").to_pylist()))
    assert res["already_done"] >= 1 and len({p for p, _ in keys}) == 24 and len(set(keys)) == len(keys)


def test_detect_reports_each_file_and_fails_only_when_all_do(tmp_path, face_jpg):
    prefix = _without_file_permission_override()
    hidden = tmp_path / "private"
    hidden.mkdir()
    (hidden / "a.jpg").write_bytes(face_jpg.read_bytes())
    hidden.chmod(0)  # even asking whether a.jpg exists is denied
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    cmd = [sys.executable, "-m", "faceforge.cli.main", "detect", "--json"]
    try:
        res = subprocess.run(prefix + cmd + [str(hidden / "a.jpg"), str(fifo), str(face_jpg)], capture_output=True,
                             text=True, timeout=120)  # a FIFO must not hang it
        assert res.returncode == 0, res.stderr
        out = json.loads(res.stdout)
        assert out[0]["error"] == "permission denied" and "not a regular file" in out[1]["error"]
        assert len(out[2]["faces"]) == 1
        res = subprocess.run(prefix + cmd + [str(hidden / "a.jpg"), str(fifo)], capture_output=True, text=True,
                             timeout=120)
        assert res.returncode == 2 and all("error" in r for r in json.loads(res.stdout))
    finally:
        hidden.chmod(0o755)


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
