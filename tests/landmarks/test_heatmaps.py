import math

import pytest
import torch

from faceforge.landmarks.heatmaps import decode_heatmaps, gaussian_heatmaps


def test_gaussian_target_values_by_hand():
    h = gaussian_heatmaps(torch.tensor([[3.0, 2.0]]), 8, sigma=2.0)
    assert h.shape == (1, 8, 8)
    assert h[0, 2, 3] == pytest.approx(1.0)                       # at the point
    assert h[0, 2, 5] == pytest.approx(math.exp(-4 / 8), abs=1e-6)  # two pixels right: d² = 4
    assert h[0, 3, 4] == pytest.approx(math.exp(-2 / 8), abs=1e-6)  # one right, one down: d² = 2
    assert h[0, 0, 0] == pytest.approx(math.exp(-13 / 8), abs=1e-6)  # x −3, y −2


def test_sub_pixel_decoding_recovers_points_between_pixels():
    pts = torch.tensor([[[10.3, 20.7], [5.0, 5.0], [25.55, 3.45]]])
    pts_hat, conf = decode_heatmaps(gaussian_heatmaps(pts, 32, 2.0))
    assert torch.allclose(pts_hat, pts, atol=1e-3)  # the log of a Gaussian is a parabola: exact
    assert torch.allclose(conf, torch.ones(1, 3), atol=0.05)
    plain, _ = decode_heatmaps(gaussian_heatmaps(pts, 32, 2.0), refine=False)
    assert plain.tolist() == [[[10.0, 21.0], [5.0, 5.0], [26.0, 3.0]]]  # nearest pixel only


def test_decoding_on_the_border_and_confidence_of_a_weak_map():
    hm = gaussian_heatmaps(torch.tensor([[[0.0, 0.0]]]), 16, 2.0) * 0.4
    pts, conf = decode_heatmaps(hm)
    assert pts.tolist() == [[[0.0, 0.0]]]  # no neighbour on one side: no refinement
    assert conf.item() == pytest.approx(0.4)
    flat = torch.zeros(1, 1, 8, 8)  # no peak at all: index 0, offset 0 (no division by zero)
    pts, conf = decode_heatmaps(flat)
    assert torch.isfinite(pts).all() and conf.item() == 0.0


def test_a_peak_next_to_a_negative_value_is_refined_on_the_raw_values():
    hm = torch.zeros(1, 1, 1, 5)
    hm[0, 0, 0, 1:4] = torch.tensor([-0.05, 1.0, 0.6])  # a network's map: one neighbour below zero
    pts, _ = decode_heatmaps(hm)
    # the parabola through (−1, −0.05), (0, 1), (1, 0.6): vertex 0.5·(−0.05 − 0.6) / (−0.05 − 2 + 0.6)
    assert pts[0, 0, 0].item() == pytest.approx(2 + 0.5 * (-0.65) / (-1.45), abs=1e-5)
