"""The per-community decision: a second look of the same person is kept (and listed), a group
of someone else is flagged; checked on a constructed case by hand and on real photos."""
from __future__ import annotations

import numpy as np
import pytest

from faceforge.core.errors import FaceForgeError
from faceforge.curate.graph_filter import KEPT, LOOK, OTHER, decide_groups, filter_dataset, filter_identity, \
    quality_edges


def _look(centre: np.ndarray, n: int, rng, spread: float = 0.02) -> np.ndarray:
    x = centre + spread * rng.standard_normal((n, len(centre)))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _case():
    """Look A (8 faces) and look B (5) of one person, centres at cosine 0.5 (60°); three faces
    of another person at cosine 0 to both; faces of a look within ~0.99 of each other."""
    rng = np.random.default_rng(0)
    a = np.zeros(64)
    a[0] = 1
    b = np.zeros(64)
    b[:2] = [0.5, np.sqrt(0.75)]
    c = np.zeros(64)
    c[2] = 1
    return np.concatenate([_look(a, 8, rng), _look(b, 5, rng), _look(c, 3, rng)])


def test_two_looks_kept_intruders_flagged_by_hand():
    e = _case()
    # a fixed bar of 0.8 joins faces of one look only: communities A (0), B (1), intruders (2)
    r = filter_identity("x", e, threshold=0.7, margin=0.1, rule="community", same_threshold=0.363)
    assert list(r.labels) == [0] * 8 + [1] * 5 + [2] * 3
    # B's template against A's: ≈ cos 60° = 0.5 ≥ 0.363 → the same person, another look
    np.testing.assert_allclose(r.group_score[8:13], 0.5, atol=0.02)
    assert (r.outcome[:8] == KEPT).all() and (r.outcome[8:13] == LOOK).all()
    # the intruders' template is orthogonal to A's: ≈ 0 < 0.363 → someone else
    np.testing.assert_allclose(r.group_score[13:], 0.0, atol=0.03)
    assert (r.outcome[13:] == OTHER).all()
    assert list(r.keep) == [True] * 13 + [False] * 3
    # the reference rule throws the second look away with the intruders
    ref = filter_identity("x", e, threshold=0.7, margin=0.1, rule="reference")
    assert list(ref.keep) == [True] * 8 + [False] * 8 and (ref.outcome[8:] == OTHER).all()


def test_isolated_images_are_scored_one_by_one():
    e = _case()
    labels = np.array([0] * 8 + [-1] * 8)  # as if every other face were isolated
    outcome, score = decide_groups(e, labels, 0.363)
    np.testing.assert_allclose(score[8:13], 0.5, atol=0.05)
    assert list(outcome) == [KEPT] * 8 + [LOOK] * 5 + [OTHER] * 3
    # no main community: each image against the template of all the others
    two = e[[0, 13]]  # a face of A and an intruder, nothing else
    outcome, score = decide_groups(two, np.array([-1, -1]), 0.363)
    assert (outcome == OTHER).all() and np.all(np.abs(score) < 0.1)
    outcome, _ = decide_groups(e[:1], np.array([-1]), 0.363)
    assert list(outcome) == [KEPT]  # a lone image has nothing to disagree with


def test_product_edge_rule_by_hand():
    e = np.array([[1.0, 0.0], [np.cos(0.6), np.sin(0.6)]])  # cosine 0.825
    q = np.array([0.9, 0.9])
    # min rule: 0.825 ≥ 0.9 − 0.1 = 0.8 → joined; product rule: 0.825 ≥ 0.81 − 0.1 → joined too
    assert quality_edges(e, q, 0.1)[0, 1] and quality_edges(e, q, 0.1, edge="product")[0, 1]
    q = np.array([0.98, 0.98])  # min: 0.88 > 0.825 → apart; product: 0.9604 − 0.1 = 0.8604 > 0.825 → apart
    assert not quality_edges(e, q, 0.1)[0, 1] and not quality_edges(e, q, 0.1, edge="product")[0, 1]
    q = np.array([0.95, 0.95])  # min: 0.85 > 0.825 apart; product: 0.9025 − 0.1 = 0.8025 ≤ 0.825 joined
    assert not quality_edges(e, q, 0.1)[0, 1] and quality_edges(e, q, 0.1, edge="product")[0, 1]
    with pytest.raises(FaceForgeError, match="edge rule"):
        quality_edges(e, q, 0.1, edge="max")


def test_rule_needs_a_threshold_and_dbscan_gets_the_same_decision():
    e = _case()
    with pytest.raises(FaceForgeError, match="same-person threshold"):
        filter_identity("x", e, threshold=0.7, rule="community")
    with pytest.raises(FaceForgeError, match="unknown rule"):
        filter_identity("x", e, threshold=0.7, rule="vote", same_threshold=0.3)
    res = filter_dataset(e, ["x"] * len(e), method="dbscan", eps=0.1, rule="community", same_threshold=0.363)
    assert list(res["x"].keep) == [True] * 13 + [False] * 3


def test_real_photos_second_look_kept_other_people_flagged():
    """Photos of one person with three photos of other people filed under the name (sface):
    the intruders are flagged, and the rule keeps at least what the reference keeps of the
    right person."""
    from faceforge.pipeline import FacePipeline
    from tests.conftest import LFW, need
    own = sorted(need(LFW / "images" / "Colin_Powell").glob("*.jpg"))[:16]
    intruders = [need(LFW / "images" / n / f"{n}_0001.jpg") for n in ("Serena_Williams", "Jiang_Zemin", "Gray_Davis")]
    pipe = FacePipeline(embedder="sface", device="cpu")
    e = np.stack([pipe.embed_file(p, select="central")[1][0] for p in own + intruders])
    kw = dict(threshold=pipe.embedder.threshold, margin=0.1)
    new = filter_identity("Colin_Powell", e, rule="community", same_threshold=pipe.embedder.threshold, **kw)
    ref = filter_identity("Colin_Powell", e, rule="reference", **kw)
    assert not new.keep[16:].any() and (new.outcome[16:] == OTHER).all()
    assert new.keep[:16].sum() >= ref.keep[:16].sum() and new.keep[:16].sum() >= 15
