"""The tracker on synthetic boxes."""
import numpy as np

from faceforge.collect.tracker import Tracker, iou_matrix


def test_iou_by_hand():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(iou_matrix(a, b), [[50 / 150, 0.0]])


def _emb(i, rng):
    e = np.zeros(16)
    e[i] = 1.0
    e += 0.1 * rng.normal(size=16)
    return e


def test_crossing_paths_keep_their_ids():
    """Two faces walk towards each other, overlap, and part: appearance and the constant
    velocity keep each on its own track."""
    rng = np.random.default_rng(0)
    tr = Tracker()
    seen = {0: set(), 1: set()}
    for f in range(21):
        xa, xb = 10 + 8 * f, 170 - 8 * f  # they meet at f = 10
        boxes = np.array([[xa, 50, xa + 40, 90], [xb, 52, xb + 40, 92]])
        ids = tr.update(f, boxes, np.array([0.9, 0.9]), np.stack([_emb(0, rng), _emb(1, rng)]))
        seen[0].add(ids[0])
        seen[1].add(ids[1])
    assert len(seen[0]) == len(seen[1]) == 1 and seen[0] != seen[1]


def test_weak_detection_continues_a_track_and_a_cut_refinds_by_appearance():
    rng = np.random.default_rng(1)
    tr = Tracker(buffer=10)
    box = np.array([[100, 100, 140, 140]])
    (a,) = tr.update(0, box, np.array([0.9]), _emb(2, rng)[None])
    (b,) = tr.update(1, box + 2, np.array([0.4]), _emb(2, rng)[None])  # weak: stage two, by IoU
    assert b == a
    (c,) = tr.update(2, box + 500, np.array([0.9]), _emb(2, rng)[None])  # a cut: elsewhere, same face
    assert c == a
    (d,) = tr.update(3, box + 500, np.array([0.9]), _emb(5, rng)[None])  # another face in that place
    assert d != a
    (e,) = tr.update(30, box, np.array([0.4]), _emb(2, rng)[None])  # weak and long gone: no track
    assert e == -1


def test_state_round_trip_continues_identically():
    rng = np.random.default_rng(2)
    frames = [(np.array([[10 + 5 * f, 10, 50 + 5 * f, 50]]), _emb(3, rng)[None]) for f in range(8)]
    one = Tracker()
    for f, (b, e) in enumerate(frames):
        one.update(f, b, np.array([0.9]), e)
    two = Tracker()
    for f, (b, e) in enumerate(frames[:4]):
        two.update(f, b, np.array([0.9]), e)
    again = Tracker()
    again.restore(two.state())
    for f, (b, e) in enumerate(frames[4:], start=4):
        again.update(f, b, np.array([0.9]), e)
    assert again.state() == one.state()
