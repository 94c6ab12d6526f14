"""Gallery behaviour, the same for every backend; results checked against numpy brute force."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from faceforge.core.errors import FaceForgeError
from faceforge.search.decision import UNKNOWN, decide, identify
from faceforge.search.gallery import GalleryError, Hit, Records, backend_for, open_gallery


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def records(n: int, d: int = 32, seed: int = 0, ids: int = 10, prefix: str = "img") -> Records:
    rng = np.random.default_rng(seed)
    return Records(identity=[f"person_{i % ids}" for i in range(n)], path=[f"{prefix}/{i}.jpg" for i in range(n)],
                   file_key=[f"{prefix}-{seed}-{i}" for i in range(n)], face_index=[0] * n,
                   vectors=rng.normal(size=(n, d)).astype(np.float32),
                   quality=[float(i % 100) for i in range(n)])


def test_uri_forms():
    assert backend_for("gallery.db") == backend_for("http://127.0.0.1:19530") == "milvus"
    assert backend_for("faiss:some/dir") == backend_for("g.faiss") == "faiss"
    with pytest.raises(GalleryError, match="unknown gallery URI"):
        backend_for("gallery.sqlite")


def test_search_equals_brute_force(gallery_spec):
    rec = records(300)
    q = unit(np.random.default_rng(1).normal(size=(7, 32)))
    with open_gallery(**gallery_spec) as g:
        assert g.search(q, 5) == [[] for _ in range(7)]  # empty gallery: no hits, no error
        assert g.add(rec, "m") == 300
        hits = g.search(q, 10)
    sims = q @ rec.vectors.T
    for row, h in zip(sims, hits):
        best = np.argsort(-row, kind="stable")[:10]
        assert [x.path for x in h] == [rec.path[i] for i in best]
        np.testing.assert_allclose([x.score for x in h], row[best], atol=1e-5)
        assert [x.identity for x in h] == [rec.identity[i] for i in best]


def test_quality_filter_equals_brute_force(gallery_spec):
    rec = records(200)
    q = unit(np.random.default_rng(2).normal(size=(4, 32)))
    with open_gallery(**gallery_spec) as g:
        g.add(rec, "m")
        hits = g.search(q, 5, min_quality=60)
        assert g.search(q, 5, min_quality=1000) == [[] for _ in range(4)]
    allowed = np.flatnonzero(np.asarray(rec.quality) >= 60)
    for row, h in zip(q @ rec.vectors[allowed].T, hits):
        best = allowed[np.argsort(-row, kind="stable")[:5]]
        assert [x.path for x in h] == [rec.path[i] for i in best]
        assert all(x.quality >= 60 for x in h)


def test_dedup_and_resume_across_reopen(gallery_spec):
    rec = records(50)
    with open_gallery(**gallery_spec) as g:
        assert g.add(rec.take(range(20)), "m") == 20
    with open_gallery(**gallery_spec) as g:
        assert g.add(rec, "m") == 30           # the first 20 are already there
        assert g.add(rec, "m") == 0
        twice = rec.take([0, 0, 1])
        assert g.add(twice, "m") == 0
        assert g.stats()["records"] == 50
        keys = [k for t in g.iter_batches(16) for k in t.column("key").to_pylist()]
    assert sorted(keys) == sorted(rec.keys)


def test_refuses_another_model_and_size(gallery_spec):
    with open_gallery(**gallery_spec) as g:
        g.add(records(5), "sface")
        with pytest.raises(GalleryError, match="holds 'sface'.*refusing 'dlib-r29'"):
            g.add(records(5, seed=1), "dlib-r29")
        with pytest.raises(GalleryError, match="32-d"):
            g.add(records(5, d=16, seed=2), "sface")
        with pytest.raises(GalleryError, match="32-d"):
            g.search(np.ones((1, 16)), 3)
        with pytest.raises(GalleryError, match="refusing"):
            g.search(np.ones((1, 32)), 3, model="dlib-r29")
    with open_gallery(**gallery_spec) as g:  # the model is remembered by the storage itself
        assert (g.model, g.dim) == ("sface", 32)
        with pytest.raises(GalleryError, match="refusing"):
            g.add(records(5, seed=3), "other")


def test_bad_vectors_and_fields_are_clear_errors():
    v = np.ones((2, 4), np.float32)
    v[1] = np.nan
    with pytest.raises(FaceForgeError, match="not finite"):
        Records(["a", "b"], ["p", "q"], ["k1", "k2"], [0, 0], v)
    with pytest.raises(FaceForgeError, match="zero"):
        Records(["a"], ["p"], ["k1"], [0], np.zeros((1, 4)))
    with pytest.raises(FaceForgeError, match="identity must be"):
        Records([""], ["p"], ["k1"], [0], np.ones((1, 4)))
    with pytest.raises(FaceForgeError, match="different lengths"):
        Records(["a", "b"], ["p"], ["k1"], [0], np.ones((1, 4)))


def test_delete_rename_stats_export(gallery_spec, tmp_path):
    rec = records(40, ids=4)
    rec.identity[0] = 'O"Neil \\ quoted'  # names with quotes and backslashes survive filters
    with open_gallery(**gallery_spec) as g:
        g.add(rec, "m")
        assert g.stats()["identities"] == 5
        assert g.delete_identity("person_1") == 10
        assert g.delete_identity("nobody") == 0
        assert g.rename_identity("person_2", "person_3") == 10   # a merge
        assert g.rename_identity('O"Neil \\ quoted', "oneil") == 1
        with pytest.raises(GalleryError, match="identity must be"):
            g.rename_identity("person_0", "")
    with open_gallery(**gallery_spec) as g:
        counts = g.identity_counts()
        assert counts == {"person_0": 9, "person_3": 20, "oneil": 1}
        exported = pa.concat_tables(list(g.iter_batches(7)))
        hits = g.search(rec.vectors[22:23], 1)[0]
    assert hits[0].identity == "person_3" and hits[0].path == rec.path[22]
    assert len(exported) == 30
    by_key = dict(zip(exported.column("key").to_pylist(), exported.column("embedding").to_pylist()))
    for i, k in enumerate(rec.keys):
        if rec.identity[i] != "person_1":
            np.testing.assert_allclose(by_key[k], rec.vectors[i], atol=1e-6)


def test_decision_rule_by_hand():
    def hits(*pairs):
        return [Hit(f"k{i}", ident, f"p{i}", s, -1.0) for i, (ident, s) in enumerate(pairs)]
    # k = 1: the top hit and its score
    d = decide(hits(("a", 0.9), ("b", 0.8)), 1, 0.5)
    assert (d.identity, d.score, d.accepted) == ("a", 0.9, True)
    # k = 3: majority 'b' (2 of 3), score = mean of its ⌊3/2⌋ = 1 best = 0.8
    d = decide(hits(("a", 0.9), ("b", 0.8), ("b", 0.7)), 3, 0.75)
    assert (d.identity, d.candidate) == ("b", "b") and d.score == pytest.approx(0.8)
    # k = 5: majority 'b' with 3 hits, score = mean of its 2 best
    d = decide(hits(("a", 0.95), ("b", 0.9), ("b", 0.6), ("a", 0.5), ("b", 0.4)), 5, 0.76)
    assert d.candidate == "b" and d.score == pytest.approx(0.75) and d.identity == UNKNOWN and not d.accepted
    # k = 4 with only 1 hit: no decision (needs ⌊4/2⌋ = 2 of its hits)
    d = decide(hits(("a", 0.9)), 4, None)
    assert (d.identity, d.score, d.candidate) == (UNKNOWN, None, None)


def test_identify_batch(gallery_spec):
    rng = np.random.default_rng(5)
    centres = unit(rng.normal(size=(3, 32)))
    vecs = np.repeat(centres, 4, axis=0) + 0.05 * rng.normal(size=(12, 32))
    rec = Records([f"id{i // 4}" for i in range(12)], [f"p{i}" for i in range(12)], [f"k{i}" for i in range(12)],
                  [0] * 12, vecs)
    probes = np.vstack([centres + 0.05 * rng.normal(size=(3, 32)), unit(rng.normal(size=(1, 32)))])
    with open_gallery(**gallery_spec) as g:
        g.add(rec, "m")
        got = identify(g, probes, k=3, threshold=0.5)
    assert [d.identity for d in got] == ["id0", "id1", "id2", UNKNOWN]
    assert got[3].candidate is not None and got[3].score < 0.5


@pytest.mark.parametrize("uri, index", [("faiss:{d}/g", "hnsw"), ("faiss:{d}/g", "ivf"), ("{d}/g.db", "hnsw"),
                                        ("{d}/g.db", "ivf")])
def test_approximate_indexes(tmp_path, uri, index):
    """HNSW and IVF find a stored face from a slightly changed copy, and honour the filter."""
    rec = records(3000, d=32, seed=4)
    noisy = rec.vectors[:200] + 0.02 * np.random.default_rng(9).normal(size=(200, 32)).astype(np.float32)
    with open_gallery(uri.format(d=tmp_path), index=index) as g:
        g.add(rec, "m")
        hits = g.search(noisy, 5)
        filtered = g.search(noisy, 5, min_quality=50)
    found = np.mean([h[0].path == rec.path[i] for i, h in enumerate(hits)])
    assert found >= 0.95, found
    assert all(x.quality >= 50 for h in filtered for x in h) and all(len(h) == 5 for h in filtered)


def test_parquet_rows_with_extra_faces_dedup(gallery_spec):
    """Records of a file's second face (face_index 1) are recognised on a rerun too."""
    rec = records(6)
    rec.face_index = [0, 1, 2, 0, 1, 0]
    rec.file_key = ["f1", "f1", "f1", "f2", "f2", "f3"]
    with open_gallery(**gallery_spec) as g:
        assert g.add(rec.take([0, 1, 3]), "m") == 3
        assert g.existing_file_keys(["f1", "f2", "f3"]) == {"f1", "f2"}
        assert g.add(rec, "m") == 3            # only the three records not stored yet
        assert g.add(rec, "m") == 0


def test_insert_chunks_keep_files_whole():
    from faceforge.search.milvus_gallery import _chunks
    keys = ["a"] * 3 + ["b"] * 4 + ["c"] + ["d"] * 2
    assert _chunks(keys, 2) == [(0, 3), (3, 7), (7, 10)]
    assert _chunks(keys, 100) == [(0, 10)]
    assert _chunks([], 5) == []


@pytest.mark.parametrize("uri", ["faiss:{d}/g", "{d}/g.db"])
def test_index_kind_is_kept(tmp_path, uri):
    with open_gallery(uri.format(d=tmp_path), index="hnsw") as g:
        g.add(records(10), "m")
    with open_gallery(uri.format(d=tmp_path)) as g:  # opened without naming one
        assert g.index_kind == "hnsw"


NAMES = ["a/b", "../../etc/passwd", "100%", "it's \"quoted\"", 'x" or identity != "', "back\\slash", "tab\there",
         "nul\x00byte", "bell\x07", "名前 🙂", "x" * 256]


def test_identity_names_are_data(gallery_spec):
    """Any text is an identity: stored, counted, renamed and deleted exactly, never parsed."""
    n = len(NAMES)
    rec = Records(identity=NAMES, path=[f"p/{i}.jpg" for i in range(n)], file_key=[f"k{i}" for i in range(n)],
                  face_index=[0] * n, vectors=np.random.default_rng(0).normal(size=(n, 8)).astype(np.float32))
    with open_gallery(**gallery_spec) as g:
        g.add(rec, "m")
        g.add(records(5, d=8, ids=1, prefix="other"), "m")  # person_0: must be left alone throughout
        assert g.identity_counts() == {**{name: 1 for name in NAMES}, "person_0": 5}
        assert g.rename_identity("a/b", "c\x00/d") == 1
        for name in ["c\x00/d", *NAMES[1:]]:
            assert g.delete_identity(name) == 1, repr(name)
        assert g.identity_counts() == {"person_0": 5}
