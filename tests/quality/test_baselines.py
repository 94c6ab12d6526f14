"""Baseline quality measures on hand-made inputs."""
import numpy as np
import pytest
import torch
from torch import nn

from faceforge.core.errors import FaceForgeError
from faceforge.quality.baselines import embedding_norm, face_size, laplacian_sharpness, pose_frontalness, serfiq

FRONTAL = np.array([[40, 50], [80, 50], [60, 70], [45, 90], [75, 90]], np.float64)  # nose halfway down


def test_landmark_measures_by_hand():
    turned = FRONTAL.copy()
    turned[2, 0] += 10                      # nose 10 px right of the eye midpoint: yaw ratio 10/40
    assert face_size(np.stack([FRONTAL, FRONTAL * 2])).tolist() == [40.0, 80.0]
    got = pose_frontalness(np.stack([FRONTAL, turned]))
    assert got[0] == pytest.approx(0.0) and got[1] == pytest.approx(-0.25)


def test_sharpness_prefers_detail():
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    flat = np.full((1, 32, 32, 3), 128, np.uint8)
    s = laplacian_sharpness(np.concatenate([sharp, flat]))
    assert s[0] > 100 and s[1] == 0
    with pytest.raises(FaceForgeError):
        laplacian_sharpness(np.zeros((32, 32, 3), np.uint8))


def test_embedding_norm():
    assert embedding_norm(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist() == [5.0, 0.0]


def test_serfiq_by_hand():
    torch.manual_seed(0)
    layer = nn.Linear(16, 8)
    x = torch.randn(3, 16)
    assert serfiq(layer, x, passes=5, p=0.0).tolist() == pytest.approx([1.0, 1.0, 1.0])  # no dropout: all agree
    got = serfiq(layer, x, passes=6, p=0.5, seed=7)
    g = torch.Generator().manual_seed(7)
    for i in range(3):  # the same masks, drawn in the same order, distances by loops
        masks = (torch.rand(6, 16, generator=g) >= 0.5).float() / 0.5
        e = nn.functional.normalize(layer(x[i] * masks), dim=1).detach()
        d = [float((e[a] - e[b]).norm()) for a in range(6) for b in range(a + 1, 6)]
        assert got[i] == pytest.approx(2 / (1 + np.exp(np.mean(d))), rel=1e-5)
    with pytest.raises(FaceForgeError):
        serfiq(layer, x, passes=1)


def test_serfiq_layer_is_the_last_linear_to_run_not_the_last_registered():
    import torch
    from torch import nn

    from faceforge.quality.scorer import _embedding_layer

    class OutputFirst(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.out = nn.Linear(8, 4)    # registered first, runs last
            self.inner = nn.Linear(4, 8)  # registered last, runs first

        def forward(self, x):
            return self.out(torch.relu(self.inner(x)))

    m = OutputFirst()
    assert _embedding_layer(m, lambda: m(torch.zeros(1, 4))) is m.out
    assert _embedding_layer(nn.Sequential(nn.ReLU()), lambda: None) is None
