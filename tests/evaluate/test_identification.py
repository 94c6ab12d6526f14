"""SPEC §9/§10 metrics on a small fixture whose answers are worked out by hand."""
import math

import numpy as np
import pytest

from faceforge.core.errors import FaceForgeError
from faceforge.evaluate.identification import (identification_with_distractors, topk_decision,
                                               topk_precision_recall)


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
