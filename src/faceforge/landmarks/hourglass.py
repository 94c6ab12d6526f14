"""The stacked-hourglass landmarker.

A 1×1 stem (3 → C channels, no BatchNorm, no downsampling), then hourglass blocks in
sequence, each `depth` levels deep: at every level the input goes both through a residual
block at its own resolution and, max-pooled ×2, through the next level, whose output is
upsampled (nearest) and added back. The residual blocks are bottlenecks (1×1 → 3×3 → 1×1,
each with BatchNorm and ReLU) with a 1×1 projection where channels change. Every stage has its
own supervised 1×1 head (C → points): one on the stem and one after each block; training
sums the heads' losses, prediction uses the last head, and heatmaps are not fed back into
the next block. Heatmaps have the input's resolution.

After each block a 1×1 convolution with BatchNorm and ReLU (the per-stack "linear" layer of
Newell et al.'s hourglass) renormalises the features: without it every block's additive
skips roughly triple their scale (measured: mean |activation| 4.6, 20, 67 after blocks 1–3
at initialisation), and the first optimiser steps throw the heads' outputs far off.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from faceforge.core.registry import Registry

LANDMARKERS: Registry[nn.Module] = Registry("landmark network")
register_landmark_network = LANDMARKERS.register


def create_landmark_network(name: str, **kwargs) -> nn.Module:
    return LANDMARKERS.create(name, **kwargs)


def list_landmark_networks() -> list[str]:
    return LANDMARKERS.names()


class Bottleneck(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        mid = max(cout // 2, 1)
        self.body = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


class Hourglass(nn.Module):
    """One block, `depth` levels: out = res(x) + up(inner(pool(x)))."""

    def __init__(self, channels: int, depth: int) -> None:
        super().__init__()
        self.keep = Bottleneck(channels, channels)
        self.down = Bottleneck(channels, channels)
        self.inner = Hourglass(channels, depth - 1) if depth > 1 else Bottleneck(channels, channels)
        self.up = Bottleneck(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.up(self.inner(self.down(F.max_pool2d(x, 2))))
        return self.keep(x) + F.interpolate(low, size=x.shape[-2:], mode="nearest")


@register_landmark_network("hourglass")
class StackedHourglass(nn.Module):
    """forward(x) → (N, heads, points, H, W): every supervised head's heatmaps, the stem's
    first and the last block's last (the prediction); x is (N, 3, H, W) with H and W
    divisible by 2**depth."""

    def __init__(self, num_points: int = 5, channels: int = 32, stacks: int = 3, depth: int = 2,
                 input_size: int = 128) -> None:
        super().__init__()
        self.num_points, self.input_size, self.depth = num_points, input_size, depth
        self.stem = nn.Conv2d(3, channels, 1)
        self.blocks = nn.ModuleList(nn.Sequential(
            Hourglass(channels, depth), nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True)) for _ in range(stacks))
        self.heads = nn.ModuleList(nn.Conv2d(channels, num_points, 1) for _ in range(stacks + 1))
        for head in self.heads:  # start from flat maps: the first loss is the targets' own energy,
            nn.init.zeros_(head.weight)  # not that of random maps whose scale grows with every block
            nn.init.zeros_(head.bias)

    @staticmethod
    def preprocess(crops: np.ndarray) -> torch.Tensor:
        """N×S×S×3 RGB uint8 → N×3×S×S in [−1, 1]."""
        x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float()
        return x / 127.5 - 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2 ** self.depth or x.shape[-2] % 2 ** self.depth:
            raise ValueError(f"input {tuple(x.shape[-2:])} is not divisible by {2 ** self.depth}")
        h = self.stem(x)
        outs = [self.heads[0](h)]
        for block, head in zip(self.blocks, self.heads[1:]):
            h = block(h)
            outs.append(head(h))
        return torch.stack(outs, dim=1)
