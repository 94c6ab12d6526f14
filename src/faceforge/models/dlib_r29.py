"""dlib's face-recognition ResNet-29 (dlib_face_recognition_resnet_model_v1) in PyTorch.

dlib trained with BatchNorm and then folded every BatchNorm into a per-channel affine
layer (y = g·x + b), so the released file has no statistics. Here each affine is a real
nn.BatchNorm2d: loading sets running_mean = 0, running_var = 1 (pure affine), and
`unfold_batchnorm` re-measures per-channel input statistics on real faces and rewrites
(mean m, var v, weight g·sqrt(v+eps), bias b + g·m) — identical in eval mode, but with
statistics that BatchNorm fine-tuning and BN-feature quality estimation can use.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceforge.core.errors import ModelLoadError
from faceforge.models.dlib_dat import DlibNet, read_dlib_net

INPUT_MEAN_RGB = (122.782, 117.001, 104.298)  # dlib's input_rgb_image_sized
INPUT_SCALE = 1.0 / 256.0


class _Block(nn.Module):
    """Two 3×3 convolutions with a residual. A down block uses stride 2 without padding
    and a 2×2 average-pooled shortcut; dlib adds tensors of different sizes by
    zero-padding the smaller one (channels, then bottom/right), which we reproduce."""

    def __init__(self, cin: int, cout: int, down: bool) -> None:
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        skip = F.avg_pool2d(x, 2, 2) if self.down else x
        if skip.shape != y.shape:
            c, h, w = (max(a, b) for a, b in zip(skip.shape[1:], y.shape[1:]))
            skip = F.pad(skip, (0, w - skip.shape[3], 0, h - skip.shape[2], 0, c - skip.shape[1]))
            y = F.pad(y, (0, w - y.shape[3], 0, h - y.shape[2], 0, c - y.shape[1]))
        return F.relu(skip + y)


# (channels, number of blocks) per stage; the first block of stages 2-5 downsamples.
_STAGES = ((32, 3), (64, 4), (128, 3), (256, 3), (256, 1))


class DlibResNet29(nn.Module):
    """Input: N×3×150×150 RGB already normalised ((x - INPUT_MEAN_RGB) / 256).
    Output: the raw 128-d descriptor (dlib compares with Euclidean distance 0.6)."""

    def __init__(self, num_features: int = 128) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 7, stride=2, padding=0)
        self.bn1 = nn.BatchNorm2d(32)
        stages, cin = [], 32
        for i, (c, n) in enumerate(_STAGES):
            blocks = [_Block(cin if j == 0 else c, c, down=(i > 0 and j == 0)) for j in range(n)]
            stages.append(nn.Sequential(*blocks))
            cin = c
        self.layer1, self.layer2, self.layer3, self.layer4, self.layer5 = stages
        self.fc = nn.Linear(256, num_features, bias=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4, self.layer5):
            x = stage(x)
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))

    @staticmethod
    def preprocess(batch: np.ndarray) -> torch.Tensor:
        """N×150×150×3 RGB uint8 → the network's input."""
        x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float()
        return (x - torch.tensor(INPUT_MEAN_RGB).view(1, 3, 1, 1)) * INPUT_SCALE

    def batchnorms(self) -> list[nn.BatchNorm2d]:
        return [m for m in self.modules() if isinstance(m, nn.BatchNorm2d)]


def _conv_bn_pairs(model: DlibResNet29) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    pairs = [(model.conv1, model.bn1)]
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4, model.layer5):
        for b in stage:
            pairs += [(b.conv1, b.bn1), (b.conv2, b.bn2)]
    return pairs


def load_dlib_resnet(path: str | Path) -> DlibResNet29:
    """Build the network from dlib's `.dat` file (folded form: pure-affine BatchNorms)."""
    net: DlibNet = read_dlib_net(path)
    convs = [l for l in net.layers if l.kind == "con"]
    affines = [l for l in net.layers if l.kind == "affine"]
    fcs = [l for l in net.layers if l.kind == "fc"]
    model = DlibResNet29()
    pairs = _conv_bn_pairs(model)
    if len(convs) != len(pairs) or len(affines) != len(pairs) or len(fcs) != 1:
        raise ModelLoadError(f"layer counts ({len(convs)} conv, {len(affines)} affine, {len(fcs)} fc) "
                             "do not match dlib ResNet-29 (29, 29, 1)", path)
    with torch.no_grad():
        for (conv, bn), lc, la in zip(pairs, convs, affines):
            if tuple(lc.params["weight"].shape) != tuple(conv.weight.shape):
                raise ModelLoadError(f"conv shape {lc.params['weight'].shape} != expected "
                                     f"{tuple(conv.weight.shape)}", path)
            if tuple(lc.params["stride"]) != conv.stride or tuple(lc.params["padding"]) != conv.padding:
                raise ModelLoadError("conv stride/padding differ from dlib ResNet-29", path)
            conv.weight.copy_(torch.from_numpy(lc.params["weight"]))
            conv.bias.copy_(torch.from_numpy(lc.params["bias"]))
            set_affine(bn, torch.from_numpy(la.params["gamma"]), torch.from_numpy(la.params["beta"]))
        w = fcs[0].params["weight"]
        if w.shape != (256, 128):
            raise ModelLoadError(f"fc shape {w.shape} != (256, 128)", path)
        model.fc.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
    return model.eval()


def bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-channel (g, b) with which an eval-mode BatchNorm computes g·x + b."""
    g = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return g, bn.bias - bn.running_mean * g


def set_affine(bn: nn.BatchNorm2d, g: torch.Tensor, b: torch.Tensor,
               mean: torch.Tensor | None = None, var: torch.Tensor | None = None) -> None:
    """Make `bn` compute g·x + b in eval mode, with the given running statistics."""
    mean = torch.zeros_like(g) if mean is None else mean
    var = torch.ones_like(g) if var is None else var
    with torch.no_grad():
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        bn.weight.copy_(g * torch.sqrt(var + bn.eps))
        bn.bias.copy_(b + g * mean)
        bn.num_batches_tracked.zero_()


@torch.no_grad()
def measure_bn_input_stats(model: nn.Module, batches: Iterable[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-channel mean and (biased) variance of every BatchNorm2d's input, in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    acc = [[0, 0.0, 0.0] for _ in bns]

    def hook(i: int):
        def fn(_m, inputs, _out):
            x = inputs[0].double().transpose(0, 1).reshape(inputs[0].shape[1], -1)
            acc[i][0] += x.shape[1]
            acc[i][1] = acc[i][1] + x.sum(1)
            acc[i][2] = acc[i][2] + (x * x).sum(1)
        return fn

    handles = [bn.register_forward_hook(hook(i)) for i, bn in enumerate(bns)]
    was_training = model.training
    model.eval()
    try:
        for x in batches:
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if acc and acc[0][0] == 0:
        raise ValueError("no data was given to measure BatchNorm statistics")
    out = []
    for n, s, ss in acc:
        mean = s / n
        out.append((mean.float(), (ss / n - mean * mean).clamp_min(0).float()))
    return out


def unfold_batchnorm(model: nn.Module, stats: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Give every BatchNorm2d the measured statistics while keeping its eval-mode function."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if len(stats) != len(bns):
        raise ModelLoadError(f"{len(stats)} statistics for {len(bns)} BatchNorm layers")
    for bn, (mean, var) in zip(bns, stats):
        if mean.shape != bn.running_mean.shape:
            raise ModelLoadError(f"statistics of shape {tuple(mean.shape)} for a BatchNorm of "
                                 f"{bn.num_features} channels")
        g, b = bn_affine(bn)
        set_affine(bn, g, b, mean, var)
