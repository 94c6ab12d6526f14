"""BatchNorm-input quality features: layer count and order on the real backbones, values
recomputed with numpy, the embedding unchanged by the hooks."""
import numpy as np
import pytest
import torch
from torch import nn

from faceforge.core.errors import FaceForgeError
from faceforge.models.backbones import create_backbone
from faceforge.quality.features import BNInputFeatures


@pytest.mark.parametrize("name, layers", [("r50", 78), ("r100", 153), ("mbf", 49), ("dlib-r29", 29)])
def test_one_pair_per_2d_batchnorm_in_forward_order(name, layers):
    torch.manual_seed(0)
    net = create_backbone(name)
    # dlib-r29 is pretrained; the others are freshly initialised, so they run in train mode
    # (batch statistics) to keep activations finite through 50-150 layers.
    net.train(name != "dlib-r29")
    size = 150 if name == "dlib-r29" else 112
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        state = {k: v.clone() for k, v in net.state_dict().items()}
        plain = net(x)
        net.load_state_dict(state)  # the same running statistics for the hooked pass
        with BNInputFeatures(net) as q:
            hooked = net(x)
    f = q.pop()
    assert f.shape == (2, 2 * layers) and q.num_features == 2 * layers  # r100: 306, r50: 156
    assert np.isfinite(f).all() and torch.equal(plain, hooked)            # same forward pass, same output
    if name.startswith("r"):  # IResNet: stem, then each block's bn1, bn2, bn3, then its downsample
        assert q.layer_names[:5] == ["bn1", "layer1.0.bn1", "layer1.0.bn2", "layer1.0.bn3", "layer1.0.downsample.1"]
        assert q.layer_names[-1] == "bn2" and "features" not in q.layer_names  # the final 1-D BN is skipped


class Reversed(nn.Module):
    """Registered b-then-a, run a-then-b: the feature layout must follow execution."""

    def __init__(self):
        super().__init__()
        self.b = nn.BatchNorm2d(4)
        self.conv = nn.Conv2d(3, 4, 3)
        self.a = nn.BatchNorm2d(3)

    def forward(self, x):
        return self.b(self.conv(self.a(x))).mean(dim=(2, 3))


def manual_features(x: np.ndarray, model: Reversed, kind: str) -> np.ndarray:
    with torch.no_grad():
        mid = model.conv(model.a(torch.from_numpy(x))).numpy()
    rows = []
    for inp, bn in ((x, model.a), (mid, model.b)):
        flat = inp.reshape(inp.shape[0], inp.shape[1], -1).astype(np.float64)
        if kind == "var":
            v = flat.var(axis=2, ddof=1)
            rows.append(np.stack([v.var(axis=1, ddof=1), v.mean(axis=1)], axis=1))
        else:
            mp, vp = flat.mean(axis=2), flat.var(axis=2, ddof=1)
            mq, vq = bn.running_mean.numpy()[None], bn.running_var.numpy()[None]
            kl_pq = 0.5 * np.log(vq / vp) + (vp + (mp - mq) ** 2) / (2 * vq) - 0.5
            kl_qp = 0.5 * np.log(vp / vq) + (vq + (mp - mq) ** 2) / (2 * vp) - 0.5
            s = kl_pq + kl_qp
            rows.append(np.stack([s.mean(axis=1), s.var(axis=1, ddof=1)], axis=1))
    return np.concatenate(rows, axis=1)


@pytest.mark.parametrize("kind", ["var", "kl"])
def test_features_equal_numpy_and_batches_concatenate(kind):
    torch.manual_seed(1)
    model = Reversed()
    with torch.no_grad():  # give the running statistics something other than 0 / 1
        model.b.running_mean.uniform_(-1, 1), model.b.running_var.uniform_(0.5, 2)
    model.eval()
    x = np.random.default_rng(0).normal(size=(5, 3, 9, 9)).astype(np.float32)
    with BNInputFeatures(model, kind) as q, torch.no_grad():
        model(torch.from_numpy(x[:2]))
        model(torch.from_numpy(x[2:]))
    assert q.layer_names == ["a", "b"]
    assert np.allclose(q.pop(), manual_features(x, model, kind), rtol=1e-4, atol=1e-6)
    assert q.pop().shape == (0, 4)


def test_hooks_are_removed_and_bad_models_refused():
    model = Reversed().eval()
    with BNInputFeatures(model) as q:
        pass
    model(torch.randn(1, 3, 9, 9))
    assert q.pop().shape == (0, 0)  # nothing collected outside the context
    assert all(not m._forward_pre_hooks for m in model.modules())
    with pytest.raises(FaceForgeError, match="no 2-D BatchNorm"):
        BNInputFeatures(nn.Sequential(nn.Conv2d(3, 3, 1)))
    with pytest.raises(FaceForgeError, match="unknown quality feature kind"):
        BNInputFeatures(model, "entropy")


def test_spatial_variance_stays_exact_when_the_mean_dwarfs_the_spread():
    """A channel at 10,000 ± 1 (float32): Σx² − n·mean² would cancel to noise of order 10;
    the shifted sums give the variance numpy computes in float64."""
    from faceforge.quality.features import _spatial_var
    rng = np.random.default_rng(0)
    x = (1e4 + rng.normal(size=(2, 3, 49))).astype(np.float32)
    got = _spatial_var(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, x.astype(np.float64).var(axis=2, ddof=1), rtol=1e-3)
