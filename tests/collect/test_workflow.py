"""Collecting from real video: outputs, resume after kill -9 without duplicates, bad videos."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ..conftest import DATA, headless_chromium, need

VIDEO = DATA / "video"


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "faceforge.cli.main", "collect", *args, "--device", "cpu", "--json"]


def _collect(*args: str) -> dict:
    res = subprocess.run(_cmd(*args), capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout)


def test_one_person_from_a_reference_photo(tmp_path):
    clip, ref = need(VIDEO / "short_hamilton_clip.mp4"), need(VIDEO / "lin-manuel-miranda.png")
    m = _collect("one", str(clip), "-o", str(tmp_path / "out"), "--reference", str(ref), "--every", "10")
    out = tmp_path / "out"
    (name,) = m["identities"]
    assert name == "lin-manuel-miranda" and m["identities"][name]["faces"] >= 5
    crops = sorted((out / "identities" / name).glob("*.jpg"))
    assert len(crops) == m["identities"][name]["faces"]
    import pyarrow.parquet as pq
    table = pq.read_table(out / "faces.parquet")
    assert {"identity", "frame", "track", "yaw", "pitch", "blur", "embedding"} <= set(table.column_names)
    assert table.column("identity").to_pylist().count(name) == len(crops)
    assert m["status"] == "done" and m["run"]["faces_per_s"] > 0
    _check_sheet_in_chromium(out / "sheets" / f"{name}.html", len(crops))


def test_a_small_soft_person_is_collected_only_with_the_soft_gate(tmp_path):
    # Alex Lacamoire sits at the piano in the clip's first frames, his face ~20 px high: every
    # crop of him is under the sharpness gate (variance of the Laplacian 5-8, gate 50)
    clip, ref = need(VIDEO / "short_hamilton_clip.mp4"), need(VIDEO / "alex-lacamoire.png")
    other = need(VIDEO / "lin-manuel-miranda.png")
    args = ["one", str(clip), "--reference", str(ref), "--max-frames", "20"]
    assert _collect(*args, "-o", str(tmp_path / "gated"))["identities"] == {}
    m = _collect(*args, "--soft-blur", "0", "-o", str(tmp_path / "soft"))
    assert m["identities"]["alex-lacamoire"]["faces"] >= 5
    import pyarrow.parquet as pq
    from faceforge.pipeline import FacePipeline
    pipe = FacePipeline("yunet", "sface", device="cpu")
    refs = np.stack([pipe.embed_file(p, select="largest")[1][0] for p in (ref, other)])
    table = pq.read_table(tmp_path / "soft" / "faces.parquet").to_pandas()
    mine = table[table.identity == "alex-lacamoire"]
    sims = np.stack(mine.embedding.to_numpy()) @ refs.T
    assert (mine.blur < 50).all() and (sims[:, 0] > sims[:, 1]).all()  # soft, and nearer him than the singer
    from faceforge.collect.workflow import CollectSettings
    from faceforge.core.errors import FaceForgeError
    for bad in (dict(mode="many", people=2), dict(mode="one", method="dbscan"), dict(mode="one", min_blur=5.0)):
        with pytest.raises(FaceForgeError, match="soft-blur"):
            CollectSettings(**bad, soft_blur=6.0).check()


def test_many_people_at_once_on_real_video(tmp_path):
    clip = need(VIDEO / "short_hamilton_clip.mp4")
    m = _collect("many", str(clip), "-o", str(tmp_path / "out"), "--people", "2", "--every", "2")
    assert m["status"] == "done" and m["run"]["faces"] > 0
    for name, ident in m["identities"].items():  # each folder holds its faces, numbered by size
        assert name.startswith("ID_") and len(list((tmp_path / "out" / "identities" / name).glob("*.jpg"))) == \
            ident["faces"] > 0


def test_kill_9_then_resume_writes_no_duplicate_face(tmp_path):
    clip = need(VIDEO / "short_hamilton_clip.mp4")
    args = ["all", str(clip), "--every", "3", "--checkpoint-every", "5", "--roi", "150,0,490,360"]
    ref = _collect(*args, "-o", str(tmp_path / "ref"))
    out = tmp_path / "run"
    proc = subprocess.Popen(_cmd(*args, "-o", str(out)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # after a checkpoint or two, kill it mid-stream
        man = out / "manifest.json"
        if man.exists() and json.loads(man.read_text())["frames_done"] >= 30:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads((out / "manifest.json").read_text())["status"] == "running"
    again = _collect(*args, "-o", str(out))
    keys = [json.loads(line)["key"] for line in (out / "faces.jsonl").read_text().splitlines()]
    assert len(keys) == len(set(keys)) == ref["faces"]  # every face once, as many as without the kill
    assert sorted(p.name for p in (out / "crops").iterdir()) == sorted(p.name for p in (tmp_path / "ref" / "crops").iterdir())
    assert again["identities"] == ref["identities"]
    assert again["tracker"] == ref["tracker"]


def test_a_folder_written_before_a_setting_existed_resumes(tmp_path):
    clip = need(VIDEO / "short_hamilton_clip.mp4")
    out = tmp_path / "out"
    args = ["many", str(clip), "-o", str(out), "--people", "2", "--every", "4", "--checkpoint-every", "3"]
    _collect(*args, "--max-frames", "6")
    man = json.loads((out / "manifest.json").read_text())
    for key in ("merge", "soft_blur"):  # settings added later: absent from an older manifest
        del man["identity"]["settings"][key]
    (out / "manifest.json").write_text(json.dumps(man))
    assert _collect(*args, "--max-frames", "12")["frames_done"] > man["frames_done"]
    man["identity"]["settings"]["min_blur"] = 10.0  # a setting that differs still refuses
    (out / "manifest.json").write_text(json.dumps(man))
    res = subprocess.run(_cmd(*args), capture_output=True, text=True)
    assert res.returncode != 0 and "other settings" in res.stdout + res.stderr


def test_bad_videos_and_settings_are_clear_errors(tmp_path):
    clip = need(VIDEO / "short_hamilton_clip.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[:2000])
    for bad in (junk, cut, tmp_path / "missing.mp4"):
        res = subprocess.run(_cmd("all", str(bad), "-o", str(tmp_path / bad.stem)), capture_output=True, text=True)
        assert res.returncode == 2 and bad.name in json.loads(res.stdout)["error"], res.stdout
    res = subprocess.run(_cmd("many", str(clip), "-o", str(tmp_path / "m"), "--people", "0"), capture_output=True,
                         text=True)
    assert res.returncode == 2
    _collect("all", str(clip), "-o", str(tmp_path / "a"), "--every", "50")
    res = subprocess.run(_cmd("all", str(clip), "-o", str(tmp_path / "a"), "--every", "25"), capture_output=True,
                         text=True)  # the folder holds a run with other settings
    assert res.returncode == 2 and "other settings" in json.loads(res.stdout)["error"]


def _check_sheet_in_chromium(sheet: Path, n_images: int) -> None:
    with headless_chromium() as browser:
        browser.get(sheet.resolve().as_uri())
        images = browser.execute_script(
            "return Array.from(document.images).map(i => i.complete && i.naturalWidth === 112)")
        assert len(images) == n_images and all(images)


def test_identities_named_from_a_gallery_never_become_paths(tmp_path):
    clip, ref = need(VIDEO / "short_hamilton_clip.mp4"), need(VIDEO / "lin-manuel-miranda.png")
    db = str(tmp_path / "known.db")
    res = subprocess.run([sys.executable, "-m", "faceforge.cli.main", "gallery", "enrol", str(ref), "--gallery", db,
                          "--identity", "../../Lin Manuel", "--device", "cpu", "--json"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    m = _collect("all", str(clip), "-o", str(tmp_path / "out"), "--every", "10", "--name-from", db)
    assert "Lin_Manuel" in m["identities"], m["identities"]  # the gallery's name, made a plain folder name
    assert (tmp_path / "out" / "identities" / "Lin_Manuel").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["known.db", "out"]  # nothing written outside


def test_names_are_made_distinct_case_insensitively():
    from faceforge.collect.workflow import safe_name, unique_names
    assert unique_names(["ID_1", "ann", "ID_1", "Ann", "ann_2"]) == ["ID_1", "ann", "ID_1_2", "Ann_2", "ann_2_2"]
    assert safe_name("../../x") == "x" and safe_name("..") == "person" and safe_name("a/b\\c") == "a_b_c"
