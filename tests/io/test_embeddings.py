import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from faceforge.core.errors import FaceForgeError, OutputExistsError
from faceforge.io.embeddings import EmbeddingWriter, embedding_matrix, read_embeddings


def row(path: str, k: int = 0) -> dict:
    rng = np.random.default_rng(abs(hash(path)) % 2**32)
    return {"path": path, "identity": "a", "face_index": k, "box": [0, 0, 1, 1], "landmarks": [0.0] * 10,
            "det_score": 0.9, "detector": "yunet", "model": "m", "embedding": rng.normal(size=8).tolist()}


def test_interrupted_writer_keeps_finished_parts_and_resumes(tmp_path):
    out = tmp_path / "emb.parquet"
    w = EmbeddingWriter(out, chunk_size=2)
    for i in range(5):
        w.add(row(f"f{i}"))
    w.add_skip({"path": "bad.jpg", "kind": "error", "reason": "corrupt"})
    # simulated kill: no close(). A part is written when a new file begins after 2 rows of
    # finished files: f0 f1 at f2, f2 f3 at f4; f4 (more of its faces could follow) is pending.
    del w
    w2 = EmbeddingWriter(out, chunk_size=2)
    assert w2.embedded == {"f0", "f1", "f2", "f3"}
    assert [f for f in ("f0", "f3", "f4", "bad.jpg") if w2.is_done(f)] == ["f0", "f3", "bad.jpg"]
    for i in range(4, 7):
        w2.add(row(f"f{i}"))
    table = w2.close()
    assert sorted(table.column("path").to_pylist()) == [f"f{i}" for i in range(7)]
    assert not (tmp_path / "emb.parquet.parts").exists()
    assert embedding_matrix(read_embeddings(out)).shape == (7, 8)
    # a third run adds nothing twice
    w3 = EmbeddingWriter(out)
    assert all(w3.is_done(f"f{i}") for i in range(7))
    assert w3.close().num_rows == 7


def test_a_part_never_splits_a_file(tmp_path):
    out = tmp_path / "emb.parquet"
    w = EmbeddingWriter(out, chunk_size=1)
    sequence = [("one", 0), ("two", 0), ("two", 1), ("three", 0), ("three", 1), ("three", 2), ("four", 0)]
    for path, k in sequence:
        w.add(row(path, k))
    del w  # killed: every part holds whole files; the last file is not in any part
    parts = [pq.read_table(p).to_pydict() for p in sorted((tmp_path / "emb.parquet.parts").glob("part-*"))]
    assert [list(zip(p["path"], p["face_index"])) for p in parts] == \
        [[("one", 0)], [("two", 0), ("two", 1)], [("three", 0), ("three", 1), ("three", 2)]]
    w = EmbeddingWriter(out, chunk_size=1)
    assert w.embedded == {"one", "two", "three"} and not w.is_done("four")
    with pytest.raises(FaceForgeError, match="already written"):
        w.add(row("two", 2))  # a file's rows come together


def test_skips_are_retried_when_they_may_succeed(tmp_path):
    out = tmp_path / "emb.parquet"
    bad, locked = tmp_path / "bad.jpg", tmp_path / "locked.jpg"
    bad.write_bytes(b"not an image")
    locked.write_bytes(b"x")
    with EmbeddingWriter(out) as w:
        w.add(row("good"))
        w.add_skip({"path": str(bad), "kind": "error", "reason": "corrupt"})
        w.add_skip({"path": str(locked), "kind": "unreadable", "reason": "permission denied"})
    w = EmbeddingWriter(out)
    assert w.is_done(str(bad))          # same content: the same failure
    assert not w.is_done(str(locked))   # access may have been granted since
    bad.write_bytes(b"replaced by a real photo")
    assert not w.is_done(str(bad))      # changed since it was skipped
    w.add(row(str(bad)))
    w.close()
    lines = (tmp_path / "emb.parquet.skips.jsonl").read_text().splitlines()
    assert [json.loads(line)["path"] for line in lines] == [str(locked)]  # the log keeps what is still skipped


def test_output_of_another_model_is_refused(tmp_path):
    out = tmp_path / "emb.parquet"
    with EmbeddingWriter(out, model="m", detector="yunet") as w:
        w.add(row("a"))
    with pytest.raises(OutputExistsError, match="model 'm'.*--overwrite"):
        EmbeddingWriter(out, model="other", detector="yunet")
    with pytest.raises(OutputExistsError, match="detector 'yunet'"):
        EmbeddingWriter(out, model="m", detector="mtcnn")
    with EmbeddingWriter(out, model="m", detector="yunet") as w:  # ours: resumes
        assert w.is_done("a")
    with EmbeddingWriter(out, model="other", overwrite=True) as w:
        assert not w.is_done("a")
        w.add({**row("b"), "model": "other"})
    assert read_embeddings(out).column("model").to_pylist() == ["other"]
    with pytest.raises(OutputExistsError, match="is a folder"):
        EmbeddingWriter(tmp_path)


def test_read_embeddings_errors(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"nope")
    with pytest.raises(FaceForgeError, match="bad.parquet"):
        read_embeddings(bad)
    import pyarrow as pa
    pq.write_table(pa.table({"x": [1]}), tmp_path / "other.parquet")
    with pytest.raises(FaceForgeError, match="missing columns"):
        read_embeddings(tmp_path / "other.parquet")


def test_overwrite_replaces_only_when_the_new_run_closes(tmp_path):
    out = tmp_path / "emb.parquet"
    with EmbeddingWriter(out, model="m") as w:
        w.add(row("old"))
    w = EmbeddingWriter(out, chunk_size=1, model="other", overwrite=True)
    for name in ("a", "b", "c"):
        w.add({**row(name), "model": "other"})
    del w  # killed while replacing: the old output is still there
    assert read_embeddings(out).column("path").to_pylist() == ["old"]
    w = EmbeddingWriter(out, chunk_size=1, model="other", overwrite=True)  # the same command again resumes
    assert w.is_done("a") and w.is_done("b") and not w.is_done("old")
    w.add({**row("c"), "model": "other"})
    w.close()
    assert read_embeddings(out).column("path").to_pylist() == ["a", "b", "c"]


def test_a_kill_while_merging_never_duplicates(tmp_path):
    import shutil
    out = tmp_path / "emb.parquet"
    w = EmbeddingWriter(out, chunk_size=1)
    for name in ("a", "b", "c"):
        w.add(row(name))
    w.flush(complete=True)
    parts = tmp_path / "emb.parquet.parts"
    kept = tmp_path / "kept"
    shutil.copytree(parts, kept)
    w.close()
    shutil.copytree(kept, parts)  # as if killed after writing the output, before removing the parts
    w = EmbeddingWriter(out, chunk_size=1)
    w.add(row("d"))
    assert sorted(w.close().column("path").to_pylist()) == ["a", "b", "c", "d"]
