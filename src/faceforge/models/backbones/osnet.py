"""OSNet-style omni-scale network for person re-id (Zhou et al., ICCV 2019), small enough
to train from scratch on a CPU: about 2.2 M parameters at width 1.0 with a 512-d output.

A person is recognised by features of very different sizes (a logo, a bag, the whole
silhouette). Each bottleneck therefore runs T = 4 streams of 1, 2, 3 and 4 stacked
"lite" 3×3 convolutions (pointwise 1×1, then depthwise 3×3), whose receptive fields grow
with the stream, and mixes them with one shared gate: per stream, a channel-wise weight
from a small MLP on its global average (the unified aggregation gate). Stages of two such
blocks at widths 64 → 256 → 384 → 512 are separated by 1×1 convolution + 2×2 average
pooling; the pooled 512 features go through the re-id reference's embedding neck. Any
input height and width works (256 × 128 is the re-id norm).
"""
from __future__ import annotations

import torch
from torch import nn

from faceforge.models.backbones.neck import EmbeddingNeck
from faceforge.models.backbones.registry import register_backbone


def _conv_bn(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class LiteConv(nn.Module):
    """Pointwise 1×1 (no activation), depthwise 3×3, BatchNorm, ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
        self.depthwise = _conv_bn(cout, cout, 3, groups=cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.depthwise(self.pointwise(x))


class AggregationGate(nn.Module):
    """Channel weights in (0, 1) from the global average: C → C/16 → C, sigmoid."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mlp(x)


class OmniScaleBlock(nn.Module):
    """1×1 reduce to C/4 → T streams (t lite convs each) → one shared gate → sum → 1×1
    expand, plus the input (projected when the widths differ), ReLU."""

    def __init__(self, cin: int, cout: int, streams: int = 4) -> None:
        super().__init__()
        mid = cout // 4
        self.reduce = _conv_bn(cin, mid)
        self.streams = nn.ModuleList(
            nn.Sequential(*[LiteConv(mid, mid) for _ in range(t)]) for t in range(1, streams + 1))
        self.gate = AggregationGate(mid)
        self.expand = _conv_bn(mid, cout, relu=False)
        self.shortcut = _conv_bn(cin, cout, relu=False) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.reduce(x)
        y = sum(self.gate(stream(y)) for stream in self.streams)
        return torch.relu(self.expand(y) + self.shortcut(x))


class OSNet(nn.Module):
    def __init__(self, num_features: int = 512, width: float = 1.0, hidden: int | None = None,
                 bnneck: bool = False) -> None:
        super().__init__()
        c = [max(16, int(round(v * width / 16)) * 16) for v in (64, 256, 384, 512)]
        self.num_features = num_features
        self.stem = nn.Sequential(_conv_bn(3, c[0], 7, stride=2), nn.MaxPool2d(3, 2, 1))
        stages: list[nn.Module] = []
        cin = c[0]
        for i, cout in enumerate(c[1:]):
            stages += [OmniScaleBlock(cin, cout), OmniScaleBlock(cout, cout)]
            if i < 2:  # transition: 1×1 convolution and 2×2 average pooling
                stages += [_conv_bn(cout, cout), nn.AvgPool2d(2, 2)]
            cin = cout
        self.stages = nn.Sequential(*stages, _conv_bn(cin, cin))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.neck = EmbeddingNeck(cin, num_features, hidden, bnneck)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.pool(self.stages(self.stem(x))).flatten(1))


@register_backbone("osnet")
def osnet(num_features: int = 512, width: float = 1.0, hidden: int | None = None, bnneck: bool = False) -> OSNet:
    """OSNet x1.0 (width 1.0; 0.75, 0.5, 0.25 as torchreid's smaller variants)."""
    return OSNet(num_features, width, hidden, bnneck)
