import itertools

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from faceforge.core.errors import FaceForgeError
from faceforge.curate.metrics import bcubed_prf, clustering_report, nmi, noise_prf, pairwise_prf


def brute_pairwise(t, p):
    tp = fp = fn = 0
    for i, j in itertools.combinations(range(len(t)), 2):
        same_p = p[i] == p[j] and p[i] != -1
        same_t = t[i] == t[j]
        tp += same_p and same_t
        fp += same_p and not same_t
        fn += same_t and not same_p
    return tp / (tp + fp) if tp + fp else 1.0, tp / (tp + fn) if tp + fn else 1.0


def brute_bcubed(t, p):
    n = len(t)
    prec, rec = [], []
    for i in range(n):
        cluster = [j for j in range(n) if (p[j] == p[i] and p[i] != -1) or j == i]
        cls = [j for j in range(n) if t[j] == t[i]]
        both = [j for j in cluster if t[j] == t[i]]
        prec.append(len(both) / len(cluster)), rec.append(len(both) / len(cls))
    return np.mean(prec), np.mean(rec)


def test_by_hand():
    # true: A A A B B; predicted: {0: A A B}, {1: A B}
    t = ["A", "A", "A", "B", "B"]
    p = [0, 0, 1, 0, 1]
    pw = pairwise_prf(t, p)
    # predicted pairs: C(3,2)+C(2,2) = 4, of which 1 (A-A in cluster 0) is true; true pairs 3+1 = 4
    assert pw["precision"] == pytest.approx(1 / 4) and pw["recall"] == pytest.approx(1 / 4)
    bc = bcubed_prf(t, p)
    # precision per item: 2/3 2/3 1/2 1/3 1/2 ; recall: 2/3 2/3 1/3 1/2 1/2
    assert bc["precision"] == pytest.approx(np.mean([2 / 3, 2 / 3, 1 / 2, 1 / 3, 1 / 2]))
    assert bc["recall"] == pytest.approx(np.mean([2 / 3, 2 / 3, 1 / 3, 1 / 2, 1 / 2]))
    p_, r_ = bc["precision"], bc["recall"]
    assert bc["f"] == pytest.approx(2 * p_ * r_ / (p_ + r_))


def test_perfect_and_all_noise():
    t = [3, 3, 5, 5, 5, 9]
    assert pairwise_prf(t, [1, 1, 0, 0, 0, 2])["f"] == 1.0
    assert bcubed_prf(t, [1, 1, 0, 0, 0, 2])["f"] == 1.0
    assert nmi(t, [1, 1, 0, 0, 0, 2]) == pytest.approx(1.0)
    # every item left unclustered: no predicted pair, perfect precision, no recall
    pw = pairwise_prf(t, [-1] * 6)
    assert pw["precision"] == 1.0 and pw["recall"] == 0.0
    # −1 items are singletons, not one big cluster
    bc = bcubed_prf(t, [-1] * 6)
    assert bc["precision"] == 1.0 and bc["recall"] == pytest.approx(np.mean([1 / 2, 1 / 2, 1 / 3, 1 / 3, 1 / 3, 1]))


@pytest.mark.parametrize("seed", range(5))
def test_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 6, 40)
    p = rng.integers(-1, 5, 40)
    pw = pairwise_prf(t, p)
    assert (pw["precision"], pw["recall"]) == pytest.approx(brute_pairwise(t, p))
    bc = bcubed_prf(t, p)
    assert (bc["precision"], bc["recall"]) == pytest.approx(brute_bcubed(t, p))
    singletons = p.copy()
    singletons[p == -1] = 100 + np.arange((p == -1).sum())
    assert nmi(t, p) == pytest.approx(normalized_mutual_info_score(t, singletons))
    rep = clustering_report(t, p)
    assert rep["singletons"] + rep["clusters"] <= len(p) and rep["items"] == 40


def test_noise_prf_by_hand():
    flagged = np.array([1, 1, 0, 0, 1, 0], bool)
    noise = np.array([1, 0, 1, 0, 1, 0], bool)
    m = noise_prf(flagged, noise)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["kept_purity"] == pytest.approx(2 / 3)  # kept: items 2 (noise), 3, 5
    assert (m["flagged"], m["noise"], m["kept"]) == (3, 3, 3)


def test_errors():
    with pytest.raises(FaceForgeError, match="3 true labels but 2"):
        pairwise_prf([0, 1, 1], [0, 1])
    with pytest.raises(FaceForgeError, match="no items"):
        bcubed_prf([], [])
    with pytest.raises(FaceForgeError, match="one-dimensional"):
        nmi(np.zeros((2, 2)), [0, 1])
    with pytest.raises(FaceForgeError, match="equal 1-d"):
        noise_prf([True], [True, False])
