"""`faceforge gallery` as users run it, on real photos and a real video."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageOps
from typer.testing import CliRunner

from faceforge.cli.main import app
from faceforge.search.decision import threshold_from_eval
from tests.conftest import DATA, need

runner = CliRunner()


def run(*args: str, ok: bool = True) -> dict:
    res = runner.invoke(app, list(args))
    assert (res.exit_code == 0) == ok, res.output
    return json.loads(res.stdout)


@pytest.fixture()
def people(tmp_path):
    src = need(DATA / "small_ids" / "train")
    dst = tmp_path / "people"
    shutil.copytree(src, dst)
    return dst


def test_enrol_identify_manage(people, tmp_path):
    g = str(tmp_path / "g.db")
    res = run("gallery", "enrol", str(people), "-g", g, "--json")
    assert res["enrolled"][0]["faces_added"] == 9 and res["gallery"]["identities"] == 5
    res = run("gallery", "enrol", str(people), "-g", g, "--json")            # resumable: nothing twice
    assert res["enrolled"][0]["faces_added"] == 0 and res["enrolled"][0]["already_enrolled"] == 9
    extra = people / "obama" / "mirrored.jpg"                                  # a new file is picked up
    ImageOps.mirror(Image.open(DATA / "small_ids" / "test" / "obama1.jpg")).save(extra)
    assert run("gallery", "enrol", str(people), "-g", g, "--json")["enrolled"][0]["faces_added"] == 1
    extra.unlink()

    res = run("gallery", "identify", str(DATA / "small_ids" / "test"), "-g", g, "--k", "1", "--json")
    by_file = {r["source"].rsplit("/", 1)[-1]: [f["identity"] for f in r["faces"]] for r in res["results"]}
    assert by_file["obama1.jpg"] == ["obama"]
    assert by_file["alex_lacamoire1.jpg"] == ["alex_lacamoire"]
    assert set(by_file["kit_with_rose.jpg"]) == {"kit_harington", "rose_leslie"}
    assert res["threshold"] == pytest.approx(0.363)  # sface's, with no other source
    # from a 1:1 evaluation: 10 faces at FPIR 1e-2 need FPR 1.005e-3 per comparison → the 1e-3 row
    ev = tmp_path / "eval.json"
    ev.write_text(json.dumps({"tpr_at_fpr": {"0.01": {"tpr": 0.99, "threshold": 0.30},
                                             "0.001": {"tpr": 0.97, "threshold": 0.41}}}))
    res = run("gallery", "identify", str(DATA / "small_ids" / "test" / "obama1.jpg"), "-g", g,
              "--eval-json", str(ev), "--fpr", "1e-2", "--json")
    assert res["threshold"] == pytest.approx(0.41)

    res = run("gallery", "identify", str(DATA / "small_ids" / "test" / "obama1.jpg"), "-g", g,
              "--threshold", "0.99", "--hits", "--json")
    face = res["results"][0]["faces"][0]
    assert face["identity"] == "unknown" and face["candidate"] == "obama" and face["hits"]

    stats = run("gallery", "stats", "-g", g, "--json")
    assert (stats["records"], stats["identities"], stats["model"], stats["dim"]) == (10, 5, "sface", 128)
    assert run("gallery", "rename", "obama", "barack_obama", "-g", g, "--json")["moved"] == 3
    assert run("gallery", "delete", "biden", "-g", g, "--json")["deleted"] == 2
    out = tmp_path / "export.parquet"
    assert run("gallery", "export", str(out), "-g", g, "--json")["records"] == 8
    table = pq.read_table(out)
    assert sorted(set(table.column("identity").to_pylist())) == ["alex_lacamoire", "barack_obama", "kit_harington",
                                                               "rose_leslie"]
    # the export is an embeddings file: it enrols into a FAISS gallery unchanged
    res = run("gallery", "enrol", str(out), "-g", f"faiss:{tmp_path / 'f'}", "--json")
    assert res["enrolled"][0]["faces_added"] == 8


def test_refusals(people, tmp_path):
    g = str(tmp_path / "g.db")
    run("gallery", "enrol", str(people / "obama"), "-g", g, "--json")
    res = run("gallery", "enrol", str(people / "biden"), "-g", g, "--model", "dlib-r29", "--json", ok=False)
    assert "holds 'sface'" in res["error"]
    res = run("gallery", "identify", str(people), "-g", str(tmp_path / "empty.db"), "--json", ok=False)
    assert "empty" in res["error"]
    res = run("gallery", "enrol", str(DATA / "small_ids" / "test" / "obama1.jpg"), "-g", g, "--json", ok=False)
    assert "--identity" in res["error"]
    res = run("gallery", "stats", "-g", str(tmp_path / "g.sqlite"), "--json", ok=False)
    assert "unknown gallery URI" in res["error"]


def test_export_never_clobbers(people, tmp_path):
    g = str(tmp_path / "g.db")
    run("gallery", "enrol", str(people / "obama"), "-g", g, "--json")
    precious = tmp_path / "embeddings.parquet"
    precious.write_bytes(b"481 rows of someone's embeddings")
    res = run("gallery", "export", str(precious), "-g", g, "--json", ok=False)
    assert "exists" in res["error"] and "--overwrite" in res["error"]
    assert precious.read_bytes() == b"481 rows of someone's embeddings"
    n = run("gallery", "stats", "-g", g, "--json")["records"]
    assert run("gallery", "export", str(precious), "-g", g, "--overwrite", "--json")["records"] == n
    assert pq.read_table(precious).num_rows == n
    res = run("gallery", "export", g, "-g", g, "--overwrite", "--json", ok=False)  # its own folder
    assert "is a folder" in res["error"]


def test_enrol_odd_files_and_names(tmp_path, people):
    import os
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    g = str(tmp_path / "g.db")
    res = run("gallery", "enrol", str(fifo), "--identity", "x", "-g", g, "--json")  # must not hang
    assert res["enrolled"][0]["skipped"][0]["reason"] == "not a regular file (a FIFO)"
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run("gallery", "enrol", str(empty), "-g", str(tmp_path / "new.db"), "--json", ok=False)
    assert "no image files" in res["error"] and not (tmp_path / "new.db").exists()  # nothing left behind
    latin1 = Path(os.fsdecode(bytes(tmp_path) + b"/latin1"))
    (latin1 / os.fsdecode(b"Jos\xe9")).mkdir(parents=True)
    src = sorted((people / "obama").iterdir())[0]
    shutil.copy(src, latin1 / os.fsdecode(b"Jos\xe9") / os.fsdecode(b"caf\xe9.jpg"))
    res = run("gallery", "enrol", str(latin1), "-g", g, "--json")
    assert res["enrolled"][0]["faces_added"] == 1 and res["gallery"]["records"] == 1
    assert run("gallery", "enrol", str(latin1), "-g", g, "--json")["enrolled"][0]["already_enrolled"] == 1
    assert "Jos\\xe9" in run("gallery", "stats", "-g", g, "--json")["largest"]


def test_threshold_from_eval_json(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"tpr_at_fpr": {"0.001": {"tpr": 0.9, "threshold": 0.5}, "0.0001":
                                                {"tpr": None, "threshold": None}}}))
    t = threshold_from_eval(path, 1e-3)
    assert t > 0.5 and t - 0.5 < 1e-12       # eval accepts > 0.5; the decision accepts ≥ t
    with pytest.raises(Exception, match="too few negative"):
        threshold_from_eval(path, 1e-4)
    with pytest.raises(Exception, match="not evaluated"):
        threshold_from_eval(path, 1e-2)
    both = tmp_path / "two.json"
    both.write_text(json.dumps({"results": [{"method": "a", "tpr_at_fpr": {"0.001": {"threshold": 0.4}}},
                                            {"method": "b", "tpr_at_fpr": {"0.001": {"threshold": 0.6}}}]}))
    with pytest.raises(Exception, match="choose one"):
        threshold_from_eval(both, 1e-3)
    assert threshold_from_eval(both, 1e-3, method="b") == pytest.approx(0.6)


@pytest.mark.slow
def test_identify_video(tmp_path):
    video = need(DATA / "video" / "short_hamilton_clip.mp4")
    g = str(tmp_path / "g.db")
    for name in ("lin-manuel-miranda", "alex-lacamoire"):
        run("gallery", "enrol", str(DATA / "video" / f"{name}.png"), "--identity", name, "-g", g, "--json")
    res = run("gallery", "identify", str(video), "-g", g, "--every", "30", "--json")
    frames = res["results"]
    assert frames and all("frame" in r and r["frame"] % 30 == 0 for r in frames)
    seen = {f["identity"] for r in frames for f in r["faces"]}
    assert "lin-manuel-miranda" in seen
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    res = run("gallery", "identify", str(broken), "-g", g, "--json", ok=False)
    assert "broken.mp4" in res["error"] and "video" in res["error"]
