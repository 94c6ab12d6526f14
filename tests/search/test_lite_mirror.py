"""A Milvus Lite gallery answers searches from an in-process copy: it must give what Milvus
itself gives, through every write that changes the collection."""
from __future__ import annotations

import numpy as np

from faceforge.search.gallery import Records, open_gallery
from faceforge.search.milvus_gallery import MilvusGallery

from .test_gallery import records, unit


def _milvus_own(g: MilvusGallery, q: np.ndarray, k: int, min_quality: float | None = None):
    g.mirror_searches = False
    try:
        return g.search(q, k, min_quality=min_quality)
    finally:
        g.mirror_searches = True


def _same(a, b) -> None:
    assert [[h.key for h in row] for row in a] == [[h.key for h in row] for row in b]
    assert [[h.identity for h in row] for row in a] == [[h.identity for h in row] for row in b]
    np.testing.assert_allclose([[h.score for h in row] for row in a], [[h.score for h in row] for row in b], atol=1e-5)


def test_copy_is_built_after_enough_searches(tmp_path):
    q = unit(np.random.default_rng(4).normal(size=(1, 32)))
    with open_gallery(str(tmp_path / "g.db")) as g:
        g.add(records(50), "m")
        g.mirror_after_calls = 3
        for _ in range(3):
            g.search(q, 5)
            assert g._mirror is None  # Milvus Lite answered these
        g.search(q, 5)
        assert g._mirror is not None and len(g._mirror.keys) == 50


def test_mirror_follows_inserts_deletes_renames_and_reopening(tmp_path, monkeypatch):
    monkeypatch.setattr(MilvusGallery, "mirror_after_calls", 0)
    q = unit(np.random.default_rng(5).normal(size=(6, 32)))
    uri = str(tmp_path / "g.db")
    with open_gallery(uri) as g:
        g.add(records(150, seed=0), "m")
        _same(g.search(q, 8), _milvus_own(g, q, 8))
        assert g._mirror is not None and len(g._mirror.keys) == 150
        g.add(records(80, seed=1, prefix="more"), "m")  # appended to the copy
        assert len(g._mirror.keys) == 230
        _same(g.search(q, 8), _milvus_own(g, q, 8))
        _same(g.search(q, 8, min_quality=50), _milvus_own(g, q, 8, 50))
        g.delete_identity("person_3")
        hits = g.search(q, 20)
        assert all(h.identity != "person_3" for row in hits for h in row)
        _same(hits, _milvus_own(g, q, 20))
        g.rename_identity("person_4", "renamed")
        hits = g.search(q, 20)
        assert any(h.identity == "renamed" for row in hits for h in row)
        _same(hits, _milvus_own(g, q, 20))
    with open_gallery(uri) as g:  # a reopened gallery loads its copy from the collection
        _same(g.search(q, 8), _milvus_own(g, q, 8))


def test_reinserting_a_key_drops_the_copy_rather_than_doubling_it(tmp_path, monkeypatch):
    monkeypatch.setattr(MilvusGallery, "mirror_after_calls", 0)
    with open_gallery(str(tmp_path / "g.db")) as g:
        rec = records(20)
        g.add(rec, "m")
        q = rec.vectors[:2]
        g.search(q, 3)
        assert not g._mirror.append(Records(rec.identity[:1], rec.path[:1], rec.file_key[:1], [0], rec.vectors[:1]))
