"""The collectors' rules, by hand."""
import numpy as np

from faceforge.collect.modes import (
    ManyCollector,
    OneCollector,
    PoseBins,
    cluster_everyone,
    graph_reach,
    merge_clusters,
    valid_cluster,
    vote_by_tracklet,
)


def _angles(deg):
    a = np.radians(np.asarray(deg, float))
    return np.stack([np.cos(a), np.sin(a)], axis=1)


def test_a_non_core_bridge_face_does_not_join_two_groups():
    # edges where the angle differs by < 10°: A = 0,3,6,9 (complete), bridge x = 18 (touches 9
    # and 27 only: degree 2), B = 27,30,33,36 (complete). Core: degree ≥ ⌊n/3⌋ = 3 of n = 9.
    e = _angles([0, 3, 6, 9, 18, 27, 30, 33, 36])
    thr = np.cos(np.radians(10))
    reached = graph_reach(e, start=1, threshold=thr, core_share=1 / 3)
    assert reached.tolist() == [True] * 5 + [False] * 4  # A and the bridge itself, not B
    everyone = graph_reach(e, start=1, threshold=thr, core_share=0.0)  # every face core: B joins
    assert everyone.all()


def test_a_leaf_is_reached_but_never_expands():
    # a chain 0 – 8 – 16 – 24° (edges under 10°), every face core; face 1 a leaf: the search
    # from face 0 reaches it and stops there; the start expands even when marked a leaf
    e = _angles([0, 8, 16, 24])
    thr = np.cos(np.radians(10))
    assert graph_reach(e, 0, thr, core_share=0.0).all()
    assert graph_reach(e, 0, thr, core_share=0.0, leaves=np.array([False, True, False, False])).tolist() == \
        [True, True, False, False]
    assert graph_reach(e, 0, thr, core_share=0.0, leaves=np.array([True, False, False, False])).all()


def test_soft_faces_join_the_person_only_by_a_direct_match():
    # reference at 0°; the person's soft tracklet at ~20° (an edge to the reference, 25° apart at
    # most); a stranger's soft tracklet at ~40° (an edge to the person's faces, none to the reference)
    thr = np.cos(np.radians(25))
    mine, theirs = [18, 20, 22, 20], [38, 40, 42, 40]

    def collect(sharp: bool, soft: bool) -> list[int]:
        c = OneCollector(_angles([0])[0], threshold=thr, every=100, stop=None)
        for k, deg in enumerate(mine + theirs):
            c.add(_angles([deg])[0], yaw=0.0, pitch=0.0, sharp=sharp, track=1 if k < 4 else 2, soft=soft)
        c.update()
        return c.labels.tolist()

    assert collect(sharp=True, soft=False) == [0] * 8        # sharp: the stranger is bridged in
    assert collect(sharp=False, soft=True) == [0] * 4 + [-1] * 4  # leaves: the person alone
    assert collect(sharp=False, soft=False) == [-1] * 8      # under the gate and no soft gate: dropped


def test_validity_by_pose_bins_by_hand():
    front, left, right = [0, 5, -10], [20, 30, 35], [-20, -30, -35]
    assert valid_cluster(front + left + right)  # 9 faces, 3 in each bin
    assert not valid_cluster(front + left + right[:2] + [50])  # only 2 right (−50 is beyond −35)
    assert not valid_cluster(front + left + right, min_faces=10)
    assert PoseBins(((0, 20, 1), (20, 40, 2), (40, 50, 1))).counts([0, -20, 21, 40, 45, 50]) == [2, 2, 1]


def test_tracklet_majority_vote():
    labels = np.array([0, 0, 1, 1, 1, 2, 0, -1])
    tracks = np.array([5, 5, 5, 7, 7, 7, -1, 9])
    # track 5: 0 holds 2 of 3 → all 0; track 7: 1 holds 2 of 3 → all 1; no track: own label
    assert vote_by_tracklet(labels, tracks).tolist() == [0, 0, 0, 1, 1, 1, 0, -1]
    assert vote_by_tracklet(np.array([0, 1]), np.array([3, 3])).tolist() == [-1, -1]  # no majority


def test_one_collector_gathers_the_reference_person_and_stops_on_full_bins():
    rng = np.random.default_rng(0)
    me, other = rng.normal(size=32), rng.normal(size=32)
    c = OneCollector(me, threshold=0.6, every=10, stop=PoseBins(((0, 20, 5), (20, 40, 5))))
    for i in range(40):
        who = me if i % 2 == 0 else other
        c.add(who + 0.2 * rng.normal(size=32), yaw=(i % 8) * 5.0, pitch=0.0, sharp=True, track=i % 2)
    assert c.labels.tolist() == [0 if i % 2 == 0 else -1 for i in range(40)]
    assert c.done
    # DBSCAN with the elbow eps: two people and six strangers seen once (the k-distance curve's knee)
    d = OneCollector(me, threshold=0.6, every=36, method="dbscan")
    for i in range(36):
        face = rng.normal(size=32) if i >= 30 else (me if i % 2 == 0 else other) + 0.2 * rng.normal(size=32)
        d.add(face, 0.0, 0.0, True, -1)
    assert d.eps is not None and d.labels.tolist() == [0 if i % 2 == 0 and i < 30 else -1 for i in range(36)]


def test_many_collector_finds_valid_clusters():
    rng = np.random.default_rng(1)
    people = rng.normal(size=(2, 32))
    c = ManyCollector(people=2, eps=0.3)
    yaws = [0, 5, -5, 20, 25, 30, -20, -25, -30, 10]
    for i in range(40):
        p = i % 2
        c.add(people[p] + 0.15 * rng.normal(size=32), yaw=yaws[(i // 2) % 10], pitch=0.0, sharp=True, track=-1)
    assert c.done and len(c.valid) == 2
    first = c.labels[0::2]
    assert len(set(first.tolist())) == 1 and set(c.labels[1::2].tolist()) == {1 - first[0]}


def test_merge_clusters_by_hand():
    # templates at 0°, 35° and 80°: the closest pair, 0° and 35° (cos 0.82 ≥ 0.7), joins first;
    # 35°–80° alone would pass too (cos 45° = 0.71), but the joint template (17.5°) meets 80° at
    # cos 62.5° = 0.46, so the chain stops; −1 stays −1
    e = _angles([0, 0, 35, 35, 80, 80, 80, 170])
    labels = np.array([0, 0, 1, 1, 2, 2, 2, -1])
    assert merge_clusters(e, labels, 0.7).tolist() == [0, 0, 0, 0, 1, 1, 1, -1]
    assert merge_clusters(e, labels, 0.85).tolist() == [1, 1, 2, 2, 0, 0, 0, -1]  # nothing joins; by size


def test_one_person_split_by_a_cut_is_merged_into_one_valid_cluster():
    # one person in two shots: shot A turned left, shot B turned right; DBSCAN at eps 0.2 sees
    # two groups (cosine 0.6 apart), neither with every pose bin, and their templates match
    rng = np.random.default_rng(3)
    person, offset = rng.normal(size=32), rng.normal(size=32)
    offset -= offset @ person / (person @ person) * person
    offset *= 0.63 * np.linalg.norm(person) / np.linalg.norm(offset)  # cos(A, B) ≈ (1 − 0.4)/(1 + 0.4)
    shots = {"A": (person + offset, [0, 5, 20, 25, 30]), "B": (person - offset, [0, -5, -20, -25, -30])}
    collectors = [ManyCollector(people=1, eps=0.2), ManyCollector(people=1, eps=0.2, merge_threshold=0.363)]
    for c in collectors:
        r = np.random.default_rng(4)
        for shot, (centre, yaws) in shots.items():
            for i in range(15):
                c.add(centre + 0.05 * r.normal(size=32), yaw=yaws[i % 5], pitch=0.0, sharp=True, track=-1)
        c.update()
    reference, merged = collectors
    assert not reference.done and sorted(set(reference.labels.tolist())) == [0, 1]
    assert merged.done and merged.labels.tolist() == [0] * 30


def test_everyone_clusters_tracklets():
    rng = np.random.default_rng(2)
    people = rng.normal(size=(3, 32))
    tracks = np.repeat(np.arange(9), 4)  # 9 tracklets of 4 faces, 3 per person
    who = np.repeat(np.arange(9) % 3, 4)
    emb = people[who] + 0.3 * rng.normal(size=(36, 32))
    labels = cluster_everyone(emb, tracks, threshold=0.5)
    for p in range(3):
        assert len(set(labels[who == p].tolist())) == 1 and labels[who == p][0] >= 0
    assert len(set(labels.tolist())) == 3
    # a fourth person in one tracklet of 4 faces is an identity; a stray face is not
    loner = rng.normal(size=32)
    emb2 = np.vstack([emb, loner + 0.1 * rng.normal(size=(4, 32)), rng.normal(size=(1, 32))])
    labels2 = cluster_everyone(emb2, np.r_[tracks, [20] * 4, -1], threshold=0.5)
    assert len(set(labels2[36:40].tolist())) == 1 and labels2[36] >= 0 and labels2[40] == -1
    assert len(set(labels2[labels2 >= 0].tolist())) == 4
