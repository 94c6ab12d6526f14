"""Metrics against independent computations (sklearn, brute force)."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from faceforge.core.errors import FaceForgeError
from faceforge.evaluate.lfw import read_pairs
from faceforge.evaluate.verification import auc, best_threshold, kfold_accuracy, roc, tpr_at_fpr


def data(n=2000, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    y = rng.uniform(size=n) < 0.4
    s = rng.normal(size=n) + 1.5 * y
    if ties:
        s = np.round(s, 1)
    return s, y


@pytest.mark.parametrize("ties", [False, True])
def test_best_threshold_is_the_brute_force_optimum(ties):
    s, y = data(ties=ties)
    t, acc = best_threshold(s, y)
    brute = max(((s >= c) == y).mean() for c in np.r_[np.unique(s), np.inf])
    assert acc == pytest.approx(brute) and ((s >= t) == y).mean() == pytest.approx(acc)


@pytest.mark.parametrize("ties", [False, True])
def test_roc_matches_sklearn(ties):
    s, y = data(ties=ties)
    c = roc(s, y)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    assert np.allclose(c.fpr, fpr) and np.allclose(c.tpr, tpr)
    assert auc(c) == pytest.approx(roc_auc_score(y, s))


@pytest.mark.parametrize("ties", [False, True])
def test_tpr_at_fpr_brute_force(ties):
    s, y = data(n=5000, ties=ties)
    res = tpr_at_fpr(s, y, fprs=(1e-3, 1e-2, 1e-1, 0.5))
    neg, pos = s[~y], s[y]
    for key, r in res.items():
        target = float(key)
        # brute force: the best TPR among thresholds whose FPR (score > t) is within target
        best = max((pos > t).mean() for t in np.r_[np.unique(s), -np.inf] if (neg > t).mean() <= target)
        assert r["tpr"] == pytest.approx(best)
        assert (neg > r["threshold"]).mean() <= target


def test_degenerate_inputs():
    s, y = data(n=100)
    with pytest.warns(UserWarning, match="not measurable"):
        r = tpr_at_fpr(s, y, fprs=(1e-6,))
    assert np.isnan(r["1e-06"]["tpr"])
    with pytest.raises(FaceForgeError, match="both"):
        tpr_at_fpr(s, np.ones(100, bool))
    with pytest.raises(FaceForgeError, match="both classes"):
        roc(s, np.zeros(100, bool))
    with pytest.raises(FaceForgeError, match="NaN"):
        roc(np.r_[s[:-1], np.nan], y)
    same = np.full(100, 0.3)
    t, acc = best_threshold(same, y)  # all scores equal: best is to accept all or none
    assert acc == pytest.approx(max(y.mean(), 1 - y.mean()))
    c = roc(same, y)
    assert list(c.fpr) == [0.0, 1.0] and list(c.tpr) == [0.0, 1.0]


def test_kfold_accuracy_by_hand():
    s, y = data(n=600)
    folds = np.repeat(np.arange(3), 200)
    res = kfold_accuracy(s, y, folds)
    for f in range(3):
        tr, te = folds != f, folds == f
        t, _ = best_threshold(s[tr], y[tr])
        assert res["fold_accuracies"][f] == pytest.approx(((s[te] >= t) == y[te]).mean())
    assert res["accuracy_mean"] == pytest.approx(np.mean(res["fold_accuracies"]))
    with pytest.raises(FaceForgeError, match="at least 2 folds"):
        kfold_accuracy(s, y, np.zeros(600))


def test_read_official_pairs(lfw_root):
    p = read_pairs(lfw_root / "pairs.txt")
    assert len(p.same) == 6000 and p.same.sum() == 3000 and set(p.fold) == set(range(10))
    assert all((p.same[p.fold == f]).sum() == 300 for f in range(10))
    assert p.left[0].endswith(".jpg") and (lfw_root / "images" / p.left[0]).is_file()


def test_malformed_pairs_file(tmp_path):
    bad = tmp_path / "pairs.txt"
    bad.write_text("2 1\nA 1 2\n")
    with pytest.raises(FaceForgeError, match="expected 4 pairs"):
        read_pairs(bad)
    bad.write_text("x y\n")
    with pytest.raises(FaceForgeError, match="first line"):
        read_pairs(bad)


def test_tpr_at_fpr_float32_and_integer_labels_match_float64():
    s, y = data(n=4000, ties=True)
    a = tpr_at_fpr(s.astype(np.float32), y.astype(np.int8), fprs=(1e-2, 1e-1))
    b = tpr_at_fpr(s.astype(np.float32).astype(np.float64), y, fprs=(1e-2, 1e-1))
    assert a == b
    with pytest.raises(FaceForgeError, match="4000 scores but 3999"):
        tpr_at_fpr(s, y[:-1])
