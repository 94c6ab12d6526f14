"""Re-id metrics against hand-worked cases and a brute-force count."""
from __future__ import annotations

import numpy as np
import pytest

from faceforge.core.errors import FaceForgeError
from faceforge.evaluate.reid import (
    camera_split,
    cosine_distance,
    cross_camera_pairs,
    k_reciprocal_rerank,
    pair_accuracy,
    rank_cross_camera,
)

# gallery: person, camera
G_IDS, G_CAMS = np.array([1, 2, 1, 3]), np.array([1, 1, 0, 1])
# queries: person 1 in camera 0, person 3 in camera 0, person 2 in camera 1 (its only match is
# in its own camera: not counted), person 1 in a third camera
Q_IDS, Q_CAMS = np.array([1, 3, 2, 1]), np.array([0, 0, 1, 2])
DIST = np.array([[0.5, 0.1, 0.2, 0.9],
                 [0.3, 0.4, 0.5, 0.1],
                 [0.2, 0.1, 0.3, 0.4],
                 [0.4, 0.3, 0.1, 0.2]])


def test_ranking_by_hand():
    r = rank_cross_camera(DIST, Q_IDS, G_IDS, Q_CAMS, G_CAMS, max_rank=4)
    # q0: order g1 g2 g0 g3, g2 is person 1 in camera 0 → removed; hits F T F → rank 2, AP 1/2
    # q1: g3 first (person 3, camera 1) → rank 1, AP 1
    # q3: order g2 g3 g1 g0 → hits T F F T → rank 1, AP (1/1 + 2/4) / 2 = 0.75
    assert r.counted == 3 and r.queries == 4
    assert r.first_match.tolist() == [2, 1, 0, 1]
    np.testing.assert_allclose(r.cmc, [2 / 3, 1, 1, 1])
    assert r.mean_ap == pytest.approx((0.5 + 1 + 0.75) / 3)
    s = r.summary()
    assert s["rank1"] == pytest.approx(2 / 3) and s["rank10"] == 1.0  # short gallery: rank 10 = last


def test_ranking_matches_brute_force_count():
    rng = np.random.default_rng(3)
    q_ids, g_ids = rng.integers(0, 8, 40), rng.integers(0, 8, 60)
    q_cams, g_cams = rng.integers(0, 3, 40), rng.integers(0, 3, 60)
    dist = rng.random((40, 60))
    r = rank_cross_camera(dist, q_ids, g_ids, q_cams, g_cams, max_rank=10)
    ranks, aps = [], []
    for i in range(40):
        valid = [j for j in range(60) if not (g_ids[j] == q_ids[i] and g_cams[j] == q_cams[i])]
        valid.sort(key=lambda j: dist[i, j])
        true = [pos + 1 for pos, j in enumerate(valid) if g_ids[j] == q_ids[i]]
        if true:
            ranks.append(true[0])
            aps.append(np.mean([(n + 1) / pos for n, pos in enumerate(true)]))
    assert r.counted == len(ranks)
    for k in range(1, 11):
        assert r.cmc[k - 1] == pytest.approx(np.mean(np.array(ranks) <= k))
    assert r.mean_ap == pytest.approx(np.mean(aps))


def test_ranking_rejects_bad_input():
    with pytest.raises(FaceForgeError, match="does not match"):
        rank_cross_camera(DIST[:, :3], Q_IDS, G_IDS, Q_CAMS, G_CAMS)
    with pytest.raises(FaceForgeError, match="no query"):
        rank_cross_camera(DIST, Q_IDS, G_IDS, np.zeros(4), np.zeros(4))  # one camera: nothing to re-identify
    with pytest.raises(FaceForgeError, match="NaN"):
        rank_cross_camera(np.full((4, 4), np.nan), Q_IDS, G_IDS, Q_CAMS, G_CAMS)


def test_camera_split_and_pairs():
    q, g = camera_split([0, 1, 0, 1], 0)
    assert q.tolist() == [0, 2] and g.tolist() == [1, 3]
    with pytest.raises(FaceForgeError, match="camera 5"):
        camera_split([0, 1], 5)
    a, b, same = cross_camera_pairs([0, 0, 1, 1], [0, 1, 0, 1])
    # cross-camera pairs: (0,1) same, (0,3) different, (1,2) different, (2,3) same
    assert sorted(zip(a.tolist(), b.tolist(), same.tolist())) == [(0, 1, True), (0, 3, False), (1, 2, False),
                                                                  (2, 3, True)]
    a, b, same = cross_camera_pairs(np.repeat(np.arange(6), 4), np.tile([0, 0, 1, 1], 6), seed=1)
    assert same.sum() == (~same).sum() == 6 * 4  # 4 cross pairs per person, as many impostor pairs
    assert (np.array([0, 0, 1, 1] * 6)[a] != np.array([0, 0, 1, 1] * 6)[b]).all()


def test_pair_accuracy_threshold_from_training_people():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, 16))
    ids = np.repeat(np.arange(10), 4)
    cams = np.tile([0, 0, 1, 1], 10)
    emb = centres[ids] + 0.05 * rng.normal(size=(40, 16))
    res = pair_accuracy(emb[:20], ids[:20], cams[:20], emb[20:], ids[20:], cams[20:])
    assert res["accuracy"] == 1.0 and res["train_accuracy"] == 1.0
    assert res["pairs"] == 2 * res["same_person_pairs"] == 40


def test_rerank_by_hand():
    # four unit vectors at angles 0, 0.1, 0.5, 0.55 rad: mutual nearest neighbours q↔g0 and g1↔g2
    ang = np.array([0.0, 0.1, 0.5, 0.55])
    x = np.stack([np.cos(ang), np.sin(ang)], 1)
    d = 1 - np.cos(ang[:, None] - ang[None, :])
    dn = d / d.max(axis=1, keepdims=True)
    # k1 = 1: each image's set is itself and its mutual nearest neighbour (no widening at k1/2 = 0)
    vq = np.zeros(4)
    vq[[0, 1]] = np.exp(-dn[0, [0, 1]])
    vq /= vq.sum()
    vg0 = np.zeros(4)
    vg0[[1, 0]] = np.exp(-dn[1, [1, 0]])
    vg0 /= vg0.sum()
    m = np.minimum(vq, vg0).sum()
    out = k_reciprocal_rerank(x[:1], x[1:], k1=1, k2=1, lam=0.0)
    np.testing.assert_allclose(out, [[1 - m / (2 - m), 1.0, 1.0]], atol=1e-6)  # float32 weights
    mixed = k_reciprocal_rerank(x[:1], x[1:], k1=1, k2=1, lam=0.3)
    np.testing.assert_allclose(mixed, 0.3 * dn[:1, 1:] + 0.7 * out, atol=1e-6)
    np.testing.assert_allclose(k_reciprocal_rerank(x[:1], x[1:], lam=1.0), dn[:1, 1:])


def test_rerank_keeps_the_gallery_shape_and_helps_on_clusters():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(12, 32))
    g_ids, q_ids = np.repeat(np.arange(12), 6), np.arange(12)
    gallery = centres[g_ids] + 0.9 * rng.normal(size=(72, 32))
    queries = centres[q_ids] + 0.9 * rng.normal(size=(12, 32))
    base = rank_cross_camera(cosine_distance(queries, gallery), q_ids, g_ids, np.zeros(12), np.ones(72))
    dist = k_reciprocal_rerank(queries, gallery, k1=6, k2=3)
    assert dist.shape == (12, 72)
    again = rank_cross_camera(dist, q_ids, g_ids, np.zeros(12), np.ones(72))
    assert again.mean_ap >= base.mean_ap
