"""SPEC §9/§10 metrics on a small fixture whose answers are worked out by hand."""
import math

import numpy as np
import pytest

from faceforge.core.errors import FaceForgeError
from sklearn.metrics import top_k_accuracy_score

from faceforge.evaluate.identification import (cmc, identification_with_distractors, open_set_identification,
                                               topk_decision, topk_decisions, topk_precision_recall)


def unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def test_identification_with_distractors_by_hand():
    # Queries on the unit circle: A at 0° and 20°, B at 90° and 150°; one distractor at 10°.
    q = np.array([unit(0), unit(20), unit(90), unit(150)])
    labels = np.array(["A", "A", "B", "B"])
    d = np.array([unit(10)])
    # positives: cos 20° = 0.9397 (A), cos 60° = 0.5 (B)
    # negatives: query pairs across identities cos 90°, 150°, 70°, 130° = 0, -0.866, 0.342, -0.643;
    #            query × distractor cos 10°, 10°, 80°, 140° = 0.985, 0.985, 0.174, -0.766
    # sorted descending F = [0.985, 0.985, 0.342, 0.174, 0, -0.643, -0.766, -0.866] (|F| = 8)
    res = identification_with_distractors(q, labels, d, fprs=(0.5, 0.3, 0.1))
    assert res["0.5"]["threshold"] == pytest.approx(0.0, abs=1e-12)             # F[4]
    assert res["0.5"]["tpr"] == 1.0                                              # both ≥ 0
    assert res["0.3"]["threshold"] == pytest.approx(math.cos(math.radians(70)))  # F[2] = 0.342
    assert res["0.3"]["tpr"] == 1.0                                              # 0.94, 0.5 ≥ 0.342
    assert res["0.1"]["threshold"] == pytest.approx(math.cos(math.radians(10)))  # F[0] = 0.985
    assert res["0.1"]["tpr"] == 0.0
    res2 = identification_with_distractors(q, labels, d, fprs=(0.2,))           # F[1] = 0.985 too
    assert res2["0.2"]["tpr"] == 0.0
    with pytest.raises(FaceForgeError, match="same-identity"):
        identification_with_distractors(q[:2], np.array(["A", "B"]), np.zeros((0, 2)))


def test_topk_decision_rules():
    assert topk_decision(["a", "b"], [0.9, 0.8], 1) == ("a", 0.9)
    # K = 3: majority b (2 hits); its score is the mean of its ⌊3/2⌋ = 1 best similarity
    assert topk_decision(["a", "b", "b"], [0.9, 0.8, 0.7], 3) == ("b", 0.8)
    # K = 4: majority needs ⌊4/2⌋ = 2 hits of the winner: mean of its 2 best
    assert topk_decision(["b", "a", "b", "c"], [0.9, 0.85, 0.7, 0.6], 4) == ("b", pytest.approx(0.8))
    # K = 5 with every identity once: the winner has 1 hit < 2 → no decision
    assert topk_decision(list("abcde"), [0.9, 0.8, 0.7, 0.6, 0.5], 5) == (None, None)
    assert topk_decision([], [], 3) == (None, None)


def test_topk_precision_recall_by_hand():
    gallery = np.array([unit(0), unit(5), unit(90), unit(95)])
    g_labels = np.array(["A", "A", "B", "B"])
    queries = np.array([unit(2), unit(92), unit(45), unit(180)])
    q_labels = np.array(["A", "B", "A", "C"])
    # top-1: q0 → A (cos 2° ≈ 0.9994), q1 → B (0.9994), q2 → A at 0° or 5°: cos 40° = 0.766, q3 → B at 95°: cos 85° = 0.087
    r = topk_precision_recall(gallery, g_labels, queries, q_labels, k=1, threshold=0.7)
    assert (r["accepted"], r["correct"]) == (3, 3) and r["precision"] == 1.0 and r["recall"] == 0.75
    r = topk_precision_recall(gallery, g_labels, queries, q_labels, k=1, threshold=0.95)
    assert (r["accepted"], r["correct"], r["recall"]) == (2, 2, 0.5)
    r = topk_precision_recall(gallery, g_labels, queries, q_labels, k=1, threshold=-1.0)
    assert (r["accepted"], r["correct"]) == (4, 3) and r["precision"] == 0.75


def random_sets(seed=0, n_ids=12, enrolled=8, dim=6, round_to=None):
    """Gallery of `enrolled` identities (1–3 images each); probes of all identities."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, dim))

    def sample(ident, n):
        x = centres[ident] + 0.8 * rng.normal(size=(n, dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return np.round(x, round_to) if round_to else x

    g, gl, p, pl = [], [], [], []
    for i in range(n_ids):
        if i < enrolled:
            n = int(rng.integers(1, 4))
            g.append(sample(i, n)); gl += [f"id{i}"] * n
        n = int(rng.integers(2, 6))
        p.append(sample(i, n)); pl += [f"id{i}"] * n
    return np.concatenate(g), np.array(gl), np.concatenate(p), np.array(pl)


def brute_probe(g, gl, p, pl):
    """Per probe: mate score, best non-mate score, rank among identities (loops)."""
    out = []
    for x, lab in zip(p, pl):
        best = {}
        for y, gid in zip(g, gl):
            best[gid] = max(best.get(gid, -np.inf), float(np.dot(x, y)))
        mate = best.get(lab)
        non = max((v for k, v in best.items() if k != lab), default=-np.inf)
        rank = None if mate is None else 1 + sum(v >= mate for k, v in best.items() if k != lab)
        out.append((mate, non, rank))
    return out


@pytest.mark.parametrize("round_to", [None, 1])
def test_open_set_tpir_at_fpir_brute_force(round_to):
    g, gl, p, pl = random_sets(round_to=round_to)
    res = open_set_identification(g, gl, p, pl, fpirs=(0.1, 0.25, 0.5), ranks=(1, 2, 5))
    b = brute_probe(g, gl, p, pl)
    mated = [r for r in b if r[0] is not None]
    nonmated_top = np.array([r[1] for r in b if r[0] is None])
    assert (res["mated"], res["non_mated"]) == (len(mated), len(nonmated_top))
    for key, r in res["tpir_at_fpir"].items():
        target = float(key)
        # best TPIR over every threshold whose FPIR (top score > t) stays within the target
        cands = [t for t in np.r_[np.unique(nonmated_top), -np.inf] if (nonmated_top > t).mean() <= target]
        best = max(np.mean([m > t and m > n for m, n, _ in mated]) for t in cands)
        assert r["tpir"] == pytest.approx(best)
        assert (nonmated_top > r["threshold"]).mean() <= target
    for rank, rate in res["cmc"].items():
        assert rate == pytest.approx(np.mean([rk <= int(rank) for _, _, rk in mated]))


def test_cmc_matches_sklearn_top_k_accuracy():
    g, gl, p, pl = random_sets(seed=1, enrolled=12)  # closed set: every probe is enrolled
    ids = np.unique(gl)
    per_id = np.stack([(p @ g[gl == i].T).max(axis=1) for i in ids], axis=1)
    curve = cmc(g, gl, p, pl, max_rank=5)
    for k in range(1, 6):
        assert curve[k - 1] == pytest.approx(top_k_accuracy_score(pl, per_id, k=k, labels=ids))


def test_open_set_degenerate_inputs():
    g = np.array([unit(0), unit(90)])
    # identical scores everywhere: a tie with a non-mate is a miss, rank is the worst
    p = np.array([unit(45), unit(45)])
    with pytest.warns(UserWarning, match="not measurable"):  # 1 non-mated probe: 0.5 < 1/1
        res = open_set_identification(g, np.array(["A", "B"]), p, np.array(["A", "C"]), fpirs=(0.5,), ranks=(1, 2))
    assert res["cmc"] == {"1": 0.0, "2": 1.0}
    assert np.isnan(res["tpir_at_fpir"]["0.5"]["tpir"])
    with pytest.warns(UserWarning, match="no non-mated"):
        open_set_identification(g, np.array(["A", "B"]), p, np.array(["A", "B"]))
    with pytest.raises(FaceForgeError, match="nothing to identify"):
        open_set_identification(g, np.array(["A", "B"]), p, np.array(["C", "D"]))
    with pytest.raises(FaceForgeError, match="NaN"):
        open_set_identification(g, np.array(["A", "B"]), np.full((1, 2), np.nan), np.array(["A"]))
    with pytest.raises(FaceForgeError, match="N×2"):
        cmc(g, np.array(["A", "B"]), np.ones((1, 3)), np.array(["A"]))


@pytest.mark.parametrize("k", [1, 3])
def test_threshold_for_target_precision_brute_force(k):
    g, gl, p, pl = random_sets(seed=2, round_to=1)
    dec = topk_decisions(g, gl, p, pl, k)
    for target in (0.6, 0.8, 0.95):
        got = dec.threshold_for_precision(target)
        best = None
        for t in np.unique(dec.score[np.isfinite(dec.score)]):
            r = topk_precision_recall(g, gl, p, pl, k, float(t))
            if r["precision"] >= target and (best is None or r["recall"] > best["recall"]
                                             or (r["recall"] == best["recall"] and t < best["threshold"])):
                best = r
        if best is None:
            with pytest.warns(UserWarning, match="no threshold"):
                assert np.isnan(dec.threshold_for_precision(target)["threshold"])
        else:
            assert got["recall"] == pytest.approx(best["recall"]) and got["precision"] >= target
            assert got["threshold"] <= best["threshold"] + 1e-12


def test_topk_decisions_equal_the_per_query_rule():
    g, gl, p, pl = random_sets(seed=3)
    dec = topk_decisions(g, gl, p, pl, k=3, block=5)
    sims = p @ g.T
    for i in range(len(p)):
        o = np.argsort(-sims[i], kind="stable")[:3]
        ident, score = topk_decision(gl[o].tolist(), sims[i, o].tolist(), 3)
        assert dec.identity[i] == ident
        assert (score is None and np.isnan(dec.score[i])) or dec.score[i] == pytest.approx(score)


def test_threshold_for_precision_degenerate():
    g = np.array([unit(0), unit(90)])
    gl = np.array(["A", "B"])
    # every decision wrong: no threshold reaches any positive precision
    dec = topk_decisions(g, gl, np.array([unit(1), unit(89)]), np.array(["B", "A"]), k=1)
    with pytest.warns(UserWarning, match="no threshold reaches"):
        r = dec.threshold_for_precision(0.5)
    assert np.isnan(r["threshold"]) and r["recall"] == 0.0
    # all scores tied, one right and one wrong: tied decisions are accepted together
    dec = topk_decisions(g, gl, np.array([unit(10), unit(80)]), np.array(["A", "A"]), k=1)
    assert dec.threshold_for_precision(0.5)["accepted"] == 2
    with pytest.warns(UserWarning):
        dec.threshold_for_precision(0.9)


def test_identification_with_distractors_blockwise_equals_sorting_everything():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(300, 16))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    labels = rng.integers(0, 60, 300)
    d = rng.normal(size=(2000, 16))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    iu = np.triu_indices(300, 1)
    same = (labels[:, None] == labels[None, :])[iu]
    s = (q @ q.T)[iu]
    neg = np.sort(np.concatenate([s[~same], (q @ d.T).ravel()]))[::-1]
    fprs = (0.5, 0.1, 1e-3, 1e-5)
    res = identification_with_distractors(q, labels, d, fprs=fprs, block=37, bins=64)  # many blocks, coarse bins
    for f in fprs:
        thr = neg[min(int(np.floor(f * len(neg))), len(neg) - 1)]
        assert res[f"{f:g}"]["threshold"] == pytest.approx(thr, abs=1e-12)  # blocks may round the last bit
        assert res[f"{f:g}"]["tpr"] == np.mean(s[same] >= thr)
