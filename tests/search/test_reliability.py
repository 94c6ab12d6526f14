"""A killed enrolment loses nothing it acknowledged and duplicates nothing on resume; a second
process opening the same local gallery gets a clear error."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from faceforge.io.embeddings import SCHEMA
from faceforge.search.gallery import GalleryError, open_gallery

ROWS, BATCH = 12000, 400

ENROL = textwrap.dedent("""
    import json, sys
    from faceforge.search.enrol import enrol_parquet
    from faceforge.search.gallery import open_gallery
    spec = json.loads(sys.argv[1])
    with open_gallery(**spec) as g:
        enrol_parquet(g, sys.argv[2], batch_rows=int(sys.argv[3]), on_batch=lambda n: print(n, flush=True))
    print("done", flush=True)
""")


def write_parquet(path: Path) -> None:
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(ROWS, 64)).astype(np.float32)
    pq.write_table(pa.Table.from_pydict({
        "path": [f"faces/{i}.jpg" for i in range(ROWS)], "identity": [f"id{i % 500}" for i in range(ROWS)],
        "face_index": [0] * ROWS, "box": [[0, 0, 1, 1]] * ROWS, "landmarks": [[0] * 10] * ROWS,
        "det_score": [1.0] * ROWS, "detector": ["yunet"] * ROWS, "model": ["sface"] * ROWS,
        "embedding": list(vecs)}, schema=SCHEMA), path)


def run_enrol(spec: dict, parquet: Path) -> subprocess.Popen:
    import json
    return subprocess.Popen([sys.executable, "-c", ENROL, json.dumps(spec), str(parquet), str(BATCH)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_kill_during_enrol_then_resume(gallery_spec, tmp_path):
    parquet = tmp_path / "emb.parquet"
    write_parquet(parquet)
    proc = run_enrol(gallery_spec, parquet)
    acked = 0
    for line in proc.stdout:  # wait for a few acknowledged batches, then kill without warning
        acked = int(line)
        if acked >= 3 * BATCH:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < acked < ROWS, "the enrolment finished before it could be killed"

    with open_gallery(**gallery_spec) as g:
        table = pa.concat_tables(list(g.iter_batches()))
        paths = table.column("path").to_pylist()
        assert len(paths) == len(set(paths))                       # nothing stored twice
        assert {f"faces/{i}.jpg" for i in range(acked)} <= set(paths)  # everything acknowledged is there

    proc = run_enrol(gallery_spec, parquet)  # resume
    out, errs = proc.communicate(timeout=600)
    assert proc.returncode == 0, errs[-3000:]
    assert out.strip().endswith("done")
    with open_gallery(**gallery_spec) as g:
        table = pa.concat_tables(list(g.iter_batches()))
    paths = table.column("path").to_pylist()
    assert len(paths) == ROWS and len(set(paths)) == ROWS
    assert len(set(table.column("key").to_pylist())) == ROWS


HOLD = textwrap.dedent("""
    import sys, time
    from faceforge.search.gallery import open_gallery
    g = open_gallery(sys.argv[1])
    print("open", flush=True)
    time.sleep(120)
""")


@pytest.mark.parametrize("local", ["gallery.db", "gallery.faiss"])
def test_second_process_gets_a_clear_error(tmp_path, local):
    uri = str(tmp_path / local)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, uri], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "open", holder.stderr.read()[-2000:]
        t0 = time.monotonic()
        with pytest.raises(GalleryError, match="open in another process") as exc:
            open_gallery(uri)
        assert str(tmp_path) in str(exc.value)
        assert time.monotonic() - t0 < 30
    finally:
        holder.kill()
        holder.wait()
    with open_gallery(uri) as g:  # the lock dies with its process
        assert g.stats()["records"] == 0
