"""Metrics against independent computations (sklearn, brute force)."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from faceforge.core.errors import FaceForgeError
from faceforge.evaluate.lfw import read_pairs
from faceforge.evaluate.verification import (all_pairs_scores, auc, best_threshold, eer, kfold_accuracy, roc,
                                             score_histograms, tpr_at_fpr)


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


def _eer_from_sklearn(s, y):
    """Crossing of FPR and FNR, walked segment by segment on sklearn's ROC."""
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    fnr = 1 - tpr
    for i in range(1, len(fpr)):
        if fpr[i] >= fnr[i]:
            # segment (fpr[i-1], fnr[i-1]) → (fpr[i], fnr[i]) meets the line fpr = fnr
            d0, d1 = fnr[i - 1] - fpr[i - 1], fnr[i] - fpr[i]
            t = d0 / (d0 - d1) if d0 != d1 else 0.0
            return fpr[i - 1] + t * (fpr[i] - fpr[i - 1])
    raise AssertionError("no crossing")


@pytest.mark.parametrize("ties", [False, True])
def test_eer_matches_the_crossing_on_sklearns_roc(ties):
    s, y = data(n=3000, ties=ties)
    r = eer(s, y)
    assert r["eer"] == pytest.approx(_eer_from_sklearn(s, y), abs=1e-12)
    # the rate lies between the two error rates at the reported threshold's neighbours
    fpr_at = (s[~y] >= r["threshold"]).mean()
    fnr_at = (s[y] < r["threshold"]).mean()
    assert min(fpr_at, fnr_at) - 1e-12 <= r["eer"] <= max(fpr_at, fnr_at) + 1e-12


def test_eer_degenerate_and_hand_worked():
    y = np.array([1, 1, 0, 0], bool)
    assert eer(np.array([0.9, 0.8, 0.2, 0.1]), y)["eer"] == 0.0       # separable
    assert eer(np.full(4, 0.5), y)["eer"] == pytest.approx(0.5)       # all scores equal
    # one impostor above one genuine: FPR 0.5 meets FNR 0.5 at the middle threshold
    assert eer(np.array([0.9, 0.3, 0.5, 0.1]), y)["eer"] == pytest.approx(0.5)
    with pytest.raises(FaceForgeError, match="both classes"):
        eer(np.array([0.1, 0.2]), np.array([1, 1]))


def test_score_histograms_count_every_score_once():
    s, y = data(n=1000)
    h = score_histograms(s, y, bins=20)
    assert sum(h["genuine"]) == y.sum() and sum(h["impostor"]) == (~y).sum()
    assert h["genuine"] == np.histogram(s[y], np.array(h["edges"]))[0].tolist()
    g, i = s[y], s[~y]
    assert h["d_prime"] == pytest.approx(abs(g.mean() - i.mean()) / np.sqrt((g.var() + i.var()) / 2))
    flat = score_histograms(np.full(4, 0.3), np.array([1, 0, 1, 0]), bins=4)
    assert sum(flat["genuine"]) == 2 and flat["d_prime"] == float("inf")
    with pytest.raises(FaceForgeError, match="both genuine and impostor"):
        score_histograms(s, np.ones(len(s), bool))


@pytest.mark.parametrize("block", [1, 7, 1000])
def test_all_pairs_scores_equal_the_full_matrix(block):
    rng = np.random.default_rng(3)
    e = rng.normal(size=(53, 8)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    ids = rng.integers(0, 9, size=53).astype(str)
    s, same = all_pairs_scores(e, ids, block=block)
    i, j = np.triu_indices(53, k=1)
    assert np.allclose(s, np.einsum("ij,ij->i", e[i], e[j]), atol=1e-6)
    assert np.array_equal(same, ids[i] == ids[j])
    q = rng.uniform(size=53)
    s2, same2, (qmin,) = all_pairs_scores(e, ids, block=block, quality=[q])
    assert np.array_equal(s2, s) and np.array_equal(same2, same) and np.array_equal(qmin, np.minimum(q[i], q[j]))
    with pytest.raises(FaceForgeError, match="one value per embedding"):
        all_pairs_scores(e, ids, quality=[q[:-1]])
    with pytest.raises(FaceForgeError, match="at least two"):
        all_pairs_scores(e[:1], ids[:1])
    with pytest.raises(FaceForgeError, match="NaN"):
        all_pairs_scores(np.r_[e[:-1], np.full((1, 8), np.nan, np.float32)], ids)


def test_training_callback_reads_the_shared_pair_format(tmp_path, lfw_root):
    """The per-epoch verification callback: comments allowed, errors name the file and line,
    accuracy equals kfold_accuracy on the same cosines."""
    import torch
    from PIL import Image

    from faceforge.evaluate.callbacks import VerificationCallback
    from faceforge.models.backbones import create_backbone
    from faceforge.train.trainer import arcface_preprocess
    names = []
    for person in ("Ariel_Sharon", "Colin_Powell"):
        for k in (1, 2, 3):
            src = lfw_root / "images" / person / f"{person}_{k:04d}.jpg"
            (tmp_path / person).mkdir(exist_ok=True)
            Image.open(src).resize((112, 112)).save(tmp_path / person / src.name)
            names.append(f"{person}/{src.name}")
    lines = ["# same, then different"] + [f"{names[i]} {names[j]} {int(i // 3 == j // 3)}"
                                            for i in range(6) for j in range(i + 1, 6)]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    torch.manual_seed(0)
    net = create_backbone("mbf", num_features=64).eval()
    cb = VerificationCallback(tmp_path / "pairs.txt", tmp_path, batch_size=4)
    res = cb.evaluate(net, arcface_preprocess, "cpu")
    emb = cb.embed(net, arcface_preprocess, "cpu")
    scores = np.array([emb[a] @ emb[b] for a, b, _ in cb.pairs])
    same = np.array([s for _, _, s in cb.pairs])
    assert res["val_acc"] == pytest.approx(kfold_accuracy(scores, same, np.arange(15) % 10)["accuracy_mean"])
    (tmp_path / "bad.txt").write_text("# header\na b 2\n")
    with pytest.raises(FaceForgeError, match="bad.txt.*line 2"):
        VerificationCallback(tmp_path / "bad.txt", tmp_path)
