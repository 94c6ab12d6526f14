"""`faceforge embed` split over processes by a launcher (RANK / WORLD_SIZE): the merged
output must equal one process's, row for row, with nothing lost or duplicated."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import LFW, need
from faceforge.io.embeddings import embedding_matrix, read_embeddings, shard_output
from faceforge.pipeline import FacePipeline, embed_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """18 LFW photos of 6 people and a photo with no face (a skip record to merge)."""
    need(LFW / "images")
    root = tmp_path_factory.mktemp("sharded") / "people"
    people = sorted(p for p in (LFW / "images").iterdir() if p.is_dir() and len(list(p.iterdir())) >= 3)[:6]
    for p in people:
        (root / p.name).mkdir(parents=True)
        for img in sorted(p.iterdir())[:3]:
            (root / p.name / img.name).symlink_to(img)
    from skimage import data
    from PIL import Image
    (root / "nobody").mkdir()
    Image.fromarray(data.coffee()).save(root / "nobody" / "coffee.jpg")
    return root


@pytest.fixture(scope="module")
def single(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "one.parquet"
    embed_folder(FacePipeline(detector="yunet", embedder="dlib-r29", device="cpu"), folder, out, shard=(0, 1),
                 show_progress=False)
    return read_embeddings(out)


def _rows(table) -> list[tuple[str, int]]:
    return list(zip(table.column("path").to_pylist(), table.column("face_index").to_pylist()))


def _same_as_single(out: Path, single) -> None:
    merged = read_embeddings(out)
    assert _rows(merged) == _rows(single)  # same rows, same order, none twice
    np.testing.assert_allclose(embedding_matrix(merged), embedding_matrix(single), atol=1e-5)
    assert merged.column("identity").to_pylist() == single.column("identity").to_pylist()
    skips = [json.loads(line)["path"] for line in out.with_name(out.name + ".skips.jsonl").read_text().splitlines()]
    assert [Path(p).name for p in skips] == ["coffee.jpg"]
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name, out.name + ".skips.jsonl"]  # shards gone


def _embed(folder: Path, out: Path, env: dict | None = None, launcher: list[str] | None = None):
    cmd = (launcher or [sys.executable, "-m"]) + ["faceforge.cli.main", "embed", str(folder), "-o", str(out),
                                                 "-m", "dlib-r29", "--detector", "yunet", "--device", "cpu", "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})})
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def test_torchrun_two_processes_merge_into_one_process_output(folder, single, tmp_path):
    out = tmp_path / "sharded.parquet"
    _embed(folder, out, launcher=[sys.executable, "-m", "torch.distributed.run", "--standalone",
                                  "--nproc-per-node", "2", "-m"])
    _same_as_single(out, single)


def test_ranks_resume_alone_and_rank0_waits_for_this_file_list(folder, single, tmp_path):
    out = tmp_path / "e.parquet"
    # rank 1 alone, as when rank 0's machine is late: its shard is complete, nothing merged
    r1 = json.loads(_embed(folder, out, {"RANK": "1", "WORLD_SIZE": "2"}).stdout)
    assert r1["rank"] == 1 and r1["new_files"] == r1["files"] == 9 and not out.exists()
    assert shard_output(out, 1, 2).exists()
    # rank 1 again (a restarted job): its shard is done, it redoes nothing
    again = json.loads(_embed(folder, out, {"RANK": "1", "WORLD_SIZE": "2"}).stdout)
    assert again["new_files"] == 0 and again["already_done"] == 9
    # rank 0 finds rank 1's marker for this file list and merges
    r0 = json.loads(_embed(folder, out, {"RANK": "0", "WORLD_SIZE": "2"}).stdout)
    assert r0["rank"] == 0 and r0["merged_rows"] == single.num_rows
    _same_as_single(out, single)
    # both ranks rerun after the merge: every file is in the output, nothing is redone or doubled
    for rank in ("1", "0"):
        res = json.loads(_embed(folder, out, {"RANK": rank, "WORLD_SIZE": "2"}).stdout)
        assert res["new_files"] == 0
    _same_as_single(out, single)


def test_bad_launcher_variables_are_refused(folder, tmp_path):
    res = subprocess.run([sys.executable, "-m", "faceforge.cli.main", "embed", str(folder), "-o",
                          str(tmp_path / "x.parquet"), "--json"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "RANK": "2", "WORLD_SIZE": "2"})
    assert res.returncode != 0 and "RANK=2 does not fit WORLD_SIZE=2" in res.stdout + res.stderr
