"""A gallery's threshold: a 1:1 verification FPR used for 1:N naming lets about N times as
many strangers through; the threshold must be read at the per-comparison rate."""
from __future__ import annotations

import json

import numpy as np
import pytest

from faceforge.core.errors import FaceForgeError
from faceforge.search import gallery_threshold, per_comparison_fpr, threshold_from_eval

VERIFY = {"tpr_at_fpr": {"0.1": {"tpr": 0.999, "threshold": 0.30}, "0.001": {"tpr": 0.98, "threshold": 0.45},
                         "1e-05": {"tpr": 0.90, "threshold": 0.55}, "1e-06": {"tpr": 0.85, "threshold": 0.60}}}


def _write(tmp_path, obj) -> str:
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(obj))
    return str(path)


def test_per_comparison_rate_by_hand():
    # one face: the rates are the same; 1000 faces at FPIR 1e-3: 1 - 0.999^(1/1000) = 1.0005e-6
    assert per_comparison_fpr(1e-3, 1) == pytest.approx(1e-3)
    assert per_comparison_fpr(1e-3, 1000) == pytest.approx(1.0005003e-6, rel=1e-6)
    assert per_comparison_fpr(0.5, 2) == pytest.approx(1 - np.sqrt(0.5))
    with pytest.raises(FaceForgeError):
        per_comparison_fpr(0.0, 10)


def test_a_1to1_result_is_read_at_fpr_over_gallery_size(tmp_path):
    path = _write(tmp_path, VERIFY)
    # the old rule: the 1e-3 row whatever the gallery's size
    assert threshold_from_eval(path, 1e-3) == pytest.approx(0.45)
    t, how = gallery_threshold(path, 1e-3, gallery_size=1000)
    assert t == pytest.approx(0.60) and t > 0.60 and "1e-06" in how  # 1.0005e-6 → the 1e-6 row, strictly above
    t, _ = gallery_threshold(path, 1e-3, gallery_size=50)  # needs 2e-5: the largest row not above is 1e-5
    assert t == pytest.approx(0.55)
    assert gallery_threshold(path, 1e-3, gallery_size=1)[0] == pytest.approx(0.45)
    with pytest.raises(FaceForgeError, match="needs a 1:1 threshold at FPR 1e-08"):
        gallery_threshold(path, 1e-3, gallery_size=100_000)


def test_an_identification_result_is_used_as_measured(tmp_path):
    path = _write(tmp_path, {"probes": 10, "tpir_at_fpir": {"0.001": {"threshold": 0.52, "tpir": 0.9}}, **VERIFY})
    t, how = gallery_threshold(path, 1e-3, gallery_size=1000)
    assert t == pytest.approx(0.52) and "identification" in how
    with pytest.raises(FaceForgeError, match="FPIR 0.01 was not measured"):
        gallery_threshold(path, 1e-2, gallery_size=1000)


def test_the_correction_holds_the_strangers_rate_where_the_old_rule_multiplies_it():
    """Strangers against a gallery of 200 faces, scores drawn independently (the case the
    rule is exact for): the 1:1 threshold at FPR 1e-3 names ~18 % of strangers, not 0.1 %."""
    rng = np.random.default_rng(0)
    n = 200
    impostor = rng.normal(0.0, 0.1, 2_000_000)  # the 1:1 evaluation's non-mated scores
    strangers = rng.normal(0.0, 0.1, (20_000, n)).max(axis=1)  # each stranger's best gallery score
    old = np.quantile(impostor, 1 - 1e-3)
    new = np.quantile(impostor, 1 - per_comparison_fpr(1e-2, n))
    assert np.mean(strangers >= old) == pytest.approx(1 - (1 - 1e-3) ** n, abs=0.01)  # ≈ 0.18
    assert np.mean(strangers >= new) == pytest.approx(1e-2, abs=0.003)
