import numpy as np
import pyarrow.parquet as pq
import pytest

from faceforge.core.errors import FaceForgeError
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
    # simulated kill: no close(); rows 0-3 were flushed in two parts, row 4 was pending
    del w
    w2 = EmbeddingWriter(out, chunk_size=2)
    assert w2.done == {"f0", "f1", "f2", "f3", "bad.jpg"}
    for i in range(4, 7):
        w2.add(row(f"f{i}"))
    table = w2.close()
    assert sorted(table.column("path").to_pylist()) == [f"f{i}" for i in range(7)]
    assert not (tmp_path / "emb.parquet.parts").exists()
    assert embedding_matrix(read_embeddings(out)).shape == (7, 8)
    # a third run adds nothing twice
    w3 = EmbeddingWriter(out)
    assert {f"f{i}" for i in range(7)} <= w3.done
    assert w3.close().num_rows == 7


def test_read_embeddings_errors(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"nope")
    with pytest.raises(FaceForgeError, match="bad.parquet"):
        read_embeddings(bad)
    import pyarrow as pa
    pq.write_table(pa.table({"x": [1]}), tmp_path / "other.parquet")
    with pytest.raises(FaceForgeError, match="missing columns"):
        read_embeddings(tmp_path / "other.parquet")
