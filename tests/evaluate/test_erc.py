import numpy as np
import pytest

from faceforge.core.errors import FaceForgeError
from faceforge.evaluate.erc import error_vs_reject, filtering_efficiency, fmr_threshold


def fixture(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.5
    qa, qb = rng.random(n), rng.random(n)
    # low-quality genuine pairs score low: a useful quality measure
    s = rng.normal(size=n) * 0.1 + np.where(same, 0.3 + 0.5 * np.minimum(qa, qb), 0.0)
    return s, same, qa, qb


def test_erc_against_brute_force():
    s, same, qa, qb = fixture()
    res = error_vs_reject(s, same, qa, qb, fmrs=(1e-2,), fractions=np.array([0.0, 0.1, 0.5]))
    neg = sorted(s[~same], reverse=True)
    thr = neg[int(0.01 * len(neg))]
    q = np.minimum(qa, qb)
    for p, got in zip([0.0, 0.1, 0.5], res["curves"]["0.01"]["fnmr"]):
        cut = sorted(q)[int(len(q) * p)]
        kept = [sc for sc, sm, qq in zip(s, same, q) if sm and qq >= cut]
        assert got == pytest.approx(sum(sc <= thr for sc in kept) / len(kept))
    f = res["curves"]["0.01"]["fnmr"]
    assert f[0] > f[1] > f[2]  # rejecting low quality removes errors
    assert res["curves"]["0.01"]["threshold"] == pytest.approx(thr)


def test_random_quality_does_not_help_and_errors():
    s, same, qa, qb = fixture()
    rng = np.random.default_rng(1)
    rand = error_vs_reject(s, same, rng.random(len(s)), rng.random(len(s)), fmrs=(1e-2,))
    good = error_vs_reject(s, same, qa, qb, fmrs=(1e-2,))
    assert good["curves"]["0.01"]["pauc_20"] < rand["curves"]["0.01"]["pauc_20"]
    with pytest.raises(FaceForgeError, match="not measurable"):
        fmr_threshold(s, same, 1e-6)
    with pytest.raises(FaceForgeError, match="genuine"):
        error_vs_reject(s, np.zeros(len(s), bool), qa, qb)


def test_efficiency():
    # FNMR 1 % → 0.5 % by discarding 5 %: η = (0.01 − 0.005)/0.01 · 100/5 = 10
    assert filtering_efficiency(0.01, 0.005, 5.0) == pytest.approx(10.0)
    with pytest.raises(FaceForgeError):
        filtering_efficiency(0.01, 0.005, 0.0)


def test_tied_qualities_reject_exactly_the_stated_fraction():
    """Twenty pairs, four genuine ones tied at quality 0.2: rejecting 15 % drops exactly three
    pairs, the earlier three of the tie (by hand); the fourth, a miss, stays."""
    q = np.r_[[0.5, 0.2, 0.2, 0.2, 0.9, 0.2, 0.7, 0.8, 0.6, 0.4], np.ones(10)]
    same = np.r_[np.ones(10, bool), np.zeros(10, bool)]
    s = np.r_[[0.9] * 5 + [0.0] + [0.9] * 4, np.linspace(0.01, 0.1, 10)]  # genuine pair 5 is a miss
    res = error_vs_reject(s, same, q, q, fmrs=(0.1,), fractions=np.array([0.0, 0.15]))
    f = res["curves"]["0.1"]["fnmr"]
    assert f[0] == pytest.approx(1 / 10)
    assert f[1] == pytest.approx(1 / 7)  # pairs 1, 2, 3 rejected; 0, 4, 5, 6, 7, 8, 9 kept


def test_spearman_gives_ties_their_mean_rank():
    from scipy.stats import spearmanr

    from faceforge.quality.estimator import _spearman
    a = np.array([1, 2, 2, 2, 3, 4, 4, 5.0])
    b = np.array([1, 3, 2, 4, 5, 5, 7, 8.0])
    assert _spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
