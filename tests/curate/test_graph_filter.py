"""Per-identity graph filtering: the edge rule by hand, isolated nodes, tiny identities,
identical and broken embeddings, real faces with planted intruders."""
from __future__ import annotations

import numpy as np
import pytest

from faceforge.core.errors import FaceForgeError
from faceforge.curate.graph_filter import (
    communities, filter_dataset, filter_identity, quality_edges, scaled_margin,
)


def _angles(deg):
    a = np.radians(np.asarray(deg, float))
    return np.stack([np.cos(a), np.sin(a)], axis=1)


def test_edge_rule_by_hand():
    e = _angles([0, 20, 60, 180])
    q = np.array([0.95, 0.9, 0.6, 0.9])
    got = quality_edges(e, q, margin=0.1)
    for i in range(4):
        for j in range(4):
            cos = float(e[i] @ e[j])
            assert got[i, j] == (i != j and cos >= min(q[i], q[j]) - 0.1), (i, j, cos)
    # cos 20° = 0.94 ≥ min(0.95, 0.9) − 0.1; cos 40° = 0.77 ≥ 0.6 − 0.1 (the poor image lowers
    # the bar); cos 60° = 0.5 = min(0.95, 0.6) − 0.1, joined at exactly the bar; 180° never
    assert got[0, 1] and got[1, 2] and got[0, 2] and not got[0, 3]


def test_communities_numbered_by_size_and_isolated_minus_one():
    adj = np.zeros((7, 7), bool)
    for a, b in [(0, 1), (2, 3), (3, 4), (2, 4), (5, 4)]:
        adj[a, b] = adj[b, a] = True
    for method in ("label_propagation", "leiden"):
        labels = communities(adj, method)
        assert labels[6] == -1                                    # no edge at all
        assert set(labels[[2, 3, 4, 5]]) == {0} and set(labels[[0, 1]]) == {1}, (method, labels)


@pytest.mark.parametrize("n", [1, 2])
def test_identities_of_one_and_two_images(n):
    e = _angles([0, 10][:n])
    r = filter_identity("tiny", e, np.full(n, 0.9))
    if n == 1:
        assert r.labels.tolist() == [-1] and r.main == -1 and not r.keep.any()
    else:
        assert r.labels.tolist() == [0, 0] and r.keep.all()
    far = filter_identity("apart", _angles([0, 90]), np.full(2, 0.9))
    assert far.labels.tolist() == [-1, -1] and far.main == -1


def test_all_identical_embeddings_form_one_community():
    e = np.tile([[0.3, 0.4, 0.5]], (6, 1))
    r = filter_identity("same", e, np.full(6, 1.0), margin=0.0)  # cos = 1 ≥ 1 − 0
    assert r.labels.tolist() == [0] * 6


@pytest.mark.parametrize("bad", [np.nan, 0.0])
def test_nan_or_zero_vectors_are_a_clear_error(bad):
    e = _angles([0, 10, 20])
    e[1] = bad
    with pytest.raises(FaceForgeError, match="zero or not finite.*row 1"):
        filter_identity("broken", e, np.full(3, 0.9))


def test_quality_or_threshold_exactly_one():
    with pytest.raises(FaceForgeError, match="not both or neither"):
        filter_identity("x", _angles([0, 1]))
    fixed = filter_identity("x", _angles([0, 30, 31]), threshold=0.9)   # cos 30° = 0.87 < 0.9
    assert fixed.labels.tolist() == [-1, 0, 0]


def test_dataset_results_keyed_by_identity_name():
    e = np.concatenate([_angles([0, 5, 10, 100]), _angles([200, 205])])
    ids = ["bob", "bob", "bob", "bob", "amy", "amy"]
    res = filter_dataset(e, ids, np.full(6, 0.95))
    assert set(res) == {"amy", "bob"}
    assert res["bob"].labels.tolist() == [0, 0, 0, -1] and res["amy"].keep.all()
    with pytest.raises(FaceForgeError, match="identities"):
        filter_dataset(e, ids[:3], np.full(6, 0.95))


def test_real_faces_with_planted_intruders():
    """Ten photos of one person and three of others filed under the same name (dlib-r29)."""
    from faceforge.pipeline import FacePipeline
    from tests.conftest import LFW, need
    own = sorted(need(LFW / "images" / "Tony_Blair").glob("*.jpg"))[:10]
    intruders = [need(LFW / "images" / n / f"{n}_0001.jpg") for n in ("Serena_Williams", "Jiang_Zemin", "Gray_Davis")]
    pipe = FacePipeline(embedder="dlib-r29", device="cpu")
    e = np.stack([pipe.embed_file(p, select="central")[1][0] for p in own + intruders])
    r = filter_identity("Tony_Blair", e, threshold=pipe.embedder.threshold)
    assert r.keep[:10].sum() >= 8 and not r.keep[10:].any(), r.labels


def test_scaled_margin_by_hand():
    assert scaled_margin(0.363) == pytest.approx(0.1)
    assert scaled_margin(0.905) == pytest.approx(0.1 * 0.095 / 0.637)
    assert scaled_margin(0.5, margin=0.2) == pytest.approx(0.2 * 0.5 / 0.637)
    with pytest.raises(FaceForgeError, match="cosine threshold"):
        scaled_margin(1.0)


def test_identity_rows_groups_in_input_order():
    from faceforge.curate.graph_filter import identity_rows
    groups = identity_rows(["b", "a", "b", "c", "a", "b"])
    assert list(groups) == ["a", "b", "c"]
    assert {k: v.tolist() for k, v in groups.items()} == {"a": [1, 4], "b": [0, 2, 5], "c": [3]}
    assert identity_rows([]) == {}
