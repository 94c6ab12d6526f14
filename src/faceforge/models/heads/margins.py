"""Margins: functions of (cosine logits, labels) → scaled logits for cross-entropy.

CombinedMargin covers ArcFace (m1=1, m2=0.5, m3=0), CosFace (m1=1, m2=0, m3=0.35-0.4) and
their mixtures: the target logit becomes s·(cos(m1·θ + m2) − m3). Where m1·θ + m2 > π the
cosine is no longer decreasing in θ, so (as insightface does) the target becomes
cos θ − sin(π − m2)·m2 − m3 there. AdaCos (Zhang et al. 2019) has no margin and sets the
scale from the data.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class CombinedMargin(nn.Module):
    def __init__(self, s: float = 64.0, m1: float = 1.0, m2: float = 0.5, m3: float = 0.0) -> None:
        super().__init__()
        self.s, self.m1, self.m2, self.m3 = float(s), float(m1), float(m2), float(m3)

    def forward(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """cos: N×C cosines (labels == -1 marks rows whose class is not among the columns)."""
        cos = cos.clamp(-1.0, 1.0)
        rows = torch.nonzero(labels >= 0).squeeze(1)
        out = cos.clone()
        if len(rows):
            t = cos[rows, labels[rows]]
            if self.m1 != 1.0 or self.m2 != 0.0:
                theta = torch.acos(t.clamp(-1 + 1e-7, 1 - 1e-7))
                angle = self.m1 * theta + self.m2
                fallback = t - math.sin(math.pi - self.m2) * self.m2
                t_new = torch.where(angle <= math.pi, torch.cos(angle), fallback)
            else:
                t_new = t
            out[rows, labels[rows]] = t_new - self.m3
        return out * self.s


def ArcFace(s: float = 64.0, m: float = 0.5) -> CombinedMargin:
    return CombinedMargin(s=s, m1=1.0, m2=m, m3=0.0)


def CosFace(s: float = 64.0, m: float = 0.4) -> CombinedMargin:
    return CombinedMargin(s=s, m1=1.0, m2=0.0, m3=m)


class AdaCos(nn.Module):
    """Scale s starts at √2·ln(C − 1). Dynamic: after each training batch, without
    gradient, B_avg = Σ_non-target exp(s·cos) / N and θ_med = median target angle give
    s = ln(B_avg) / cos(min(π/4, θ_med)). Fixed: s stays at its initial value."""

    def __init__(self, num_classes: int, dynamic: bool = True) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError("AdaCos needs at least 2 classes")
        self.dynamic = dynamic
        self.register_buffer("s", torch.tensor(math.sqrt(2.0) * math.log(num_classes - 1)))

    def forward(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = cos.clamp(-1.0, 1.0)
        logits = self.s.clone() * cos  # s is updated in place below
        if self.dynamic and self.training:
            with torch.no_grad():
                onehot = torch.zeros_like(cos, dtype=torch.bool)
                valid = labels >= 0
                onehot[valid.nonzero().squeeze(1), labels[valid]] = True
                b_avg = torch.where(onehot, torch.zeros_like(cos), torch.exp(logits)).sum() / cos.shape[0]
                theta = torch.acos(cos[onehot].clamp(-1 + 1e-7, 1 - 1e-7))
                theta_med = torch.median(theta)
                self.s.copy_(torch.log(b_avg) / torch.cos(torch.clamp(theta_med, max=math.pi / 4)))
        return logits
