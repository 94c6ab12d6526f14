"""MobileFaceNet as in insightface arcface_torch (`mbf`: blocks (1, 4, 6, 2), width ×2),
state-dict compatible with its released weights. Input 112×112, output num_features."""
from __future__ import annotations

import torch
from torch import nn

from faceforge.models.backbones.registry import register_backbone


class ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int, kernel=1, stride=1, padding=0, groups: int = 1) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
                                    nn.BatchNorm2d(cout), nn.PReLU(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class LinearBlock(nn.Module):
    def __init__(self, cin: int, cout: int, kernel=1, stride=1, padding=0, groups: int = 1) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
                                    nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DepthWise(nn.Module):
    """1×1 expand → depthwise 3×3 (stride) → 1×1 linear projection, optional residual."""

    def __init__(self, cin: int, cout: int, residual: bool = False, stride: int = 2, groups: int = 1) -> None:
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(ConvBlock(cin, groups), ConvBlock(groups, groups, 3, stride, 1, groups=groups),
                                    LinearBlock(groups, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layers(x)
        return x + y if self.residual else y


class Residual(nn.Module):
    def __init__(self, c: int, num_block: int, groups: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(*[DepthWise(c, c, True, 1, groups) for _ in range(num_block)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class GDC(nn.Module):
    """Global depthwise convolution head: 7×7 depthwise → linear → BatchNorm1d."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(LinearBlock(512, 512, 7, 1, 0, groups=512), nn.Flatten(),
                                    nn.Linear(512, num_features, bias=False), nn.BatchNorm1d(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MobileFaceNet(nn.Module):
    def __init__(self, num_features: int = 512, blocks=(1, 4, 6, 2), scale: int = 2) -> None:
        super().__init__()
        self.num_features = num_features
        w1, w2 = 64 * scale, 128 * scale
        self.layers = nn.ModuleList([ConvBlock(3, w1, 3, 2, 1)])
        if blocks[0] == 1:
            self.layers.append(ConvBlock(w1, w1, 3, 1, 1, groups=64))
        else:
            self.layers.append(Residual(w1, blocks[0], 128))
        self.layers.extend([
            DepthWise(w1, w1, stride=2, groups=128), Residual(w1, blocks[1], 128),
            DepthWise(w1, w2, stride=2, groups=256), Residual(w2, blocks[2], 256),
            DepthWise(w2, w2, stride=2, groups=512), Residual(w2, blocks[3], 256),
        ])
        self.conv_sep = ConvBlock(w2, 512)
        self.features = GDC(num_features)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.features(self.conv_sep(x))


@register_backbone("mbf")
def mbf(num_features: int = 512, **kw) -> MobileFaceNet:
    """MobileFaceNet (arcface_torch `mbf`)."""
    return MobileFaceNet(num_features=num_features, **kw)


@register_backbone("mbf_large")
def mbf_large(num_features: int = 512, **kw) -> MobileFaceNet:
    """MobileFaceNet-large (arcface_torch `mbf_large`: blocks (2, 8, 12, 4), width ×4)."""
    return MobileFaceNet(num_features=num_features, blocks=(2, 8, 12, 4), scale=4, **kw)
