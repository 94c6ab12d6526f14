"""Margins: functions of (cosine logits, labels) → scaled logits for cross-entropy.

CombinedMargin covers ArcFace (m1=1, m2=0.5, m3=0), CosFace (m1=1, m2=0, m3=0.35-0.4),
SphereFace-style multiplicative margins (m1 > 1) and their mixtures: the target logit becomes
s·(ψ(θ) − m3) with ψ(θ) = cos(a), a = m1·θ + m2, as long as a ≤ π. Past π the cosine turns
back up, so the target would stop decreasing as the sample moves away from its centre:

* m1 == 1: as insightface does, ψ(θ) = cos θ − sin(π − m2)·m2 where a > π (kept as is, so
  ArcFace and CosFace models train exactly as before);
* m1 != 1: ψ(θ) = (−1)^k·cos(a) − 2k with k = ⌊a / π⌋. Each piece falls from 1 − 2k to
  −1 − 2k, and neighbouring pieces meet at a = kπ, so ψ is continuous and strictly
  decreasing in θ for any m1 > 0.

AdaCos (Zhang et al. 2019) has no margin and sets the scale from the data; under DDP or a
sharded PartialFC the statistics it needs are combined across ranks, so every rank keeps the
scale a single process would compute on the global batch.
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import nn


class CombinedMargin(nn.Module):
    def __init__(self, s: float = 64.0, m1: float = 1.0, m2: float = 0.5, m3: float = 0.0) -> None:
        super().__init__()
        if not m1 > 0:
            raise ValueError(f"CombinedMargin needs m1 > 0 (a multiplicative angular margin), got {m1}")
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
                t_new = self._psi(t, theta)
            else:
                t_new = t
            out[rows, labels[rows]] = t_new - self.m3
        return out * self.s

    def _psi(self, t: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """The target cosine before m3, monotone in θ (see the module docstring)."""
        angle = self.m1 * theta + self.m2
        if self.m1 == 1.0:
            fallback = t - math.sin(math.pi - self.m2) * self.m2
            return torch.where(angle <= math.pi, torch.cos(angle), fallback)
        k = torch.floor(angle / math.pi)
        sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
        return sign * torch.cos(angle) - 2.0 * k


def ArcFace(s: float = 64.0, m: float = 0.5) -> CombinedMargin:
    return CombinedMargin(s=s, m1=1.0, m2=m, m3=0.0)


def CosFace(s: float = 64.0, m: float = 0.4) -> CombinedMargin:
    return CombinedMargin(s=s, m1=1.0, m2=0.0, m3=m)


class AdaCos(nn.Module):
    """Scale s starts at √2·ln(C − 1). Dynamic: after each training batch, without
    gradient, B_avg = Σ_non-target exp(s·cos) / N and θ_med = median target angle give
    s = ln(B_avg) / cos(min(π/4, θ_med)); a batch without any target leaves s as it is.
    Fixed: s stays at its initial value.

    With a process group of more than one rank, the sums, the row count and the target angles
    are combined over ranks so that all ranks keep one s, the one a single process would get
    on the global batch. `rows_shared` says how the batch is laid out: False (DDP around a
    full FCHead) means each rank holds its own rows and every class; True (a sharded
    PartialFC sets it) means every rank holds the same gathered rows and a shard of the
    classes, each row's target on exactly one rank, so rows must not be counted once per rank.
    """

    rows_shared: bool = False  # PartialFC sets True when it shards the classes

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
                self._update_scale(cos, labels, logits)
        return logits

    def _update_scale(self, cos: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor) -> None:
        """The AdaCos update from this batch (every rank's part of it under a process group)."""
        onehot = torch.zeros_like(cos, dtype=torch.bool)
        valid = labels >= 0
        onehot[valid.nonzero().squeeze(1), labels[valid]] = True
        b_sum = torch.where(onehot, torch.zeros_like(cos), torch.exp(logits)).sum()
        rows = torch.tensor(float(cos.shape[0]), dtype=cos.dtype, device=cos.device)
        theta = torch.acos(cos[onehot].clamp(-1 + 1e-7, 1 - 1e-7))
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(b_sum)
            if not self.rows_shared:
                dist.all_reduce(rows)
            theta = _gather_varying(theta)
        if theta.numel() == 0:
            return
        theta_med = torch.median(theta)
        self.s.copy_(torch.log(b_sum / rows) / torch.cos(torch.clamp(theta_med, max=math.pi / 4)))


def _gather_varying(x: torch.Tensor) -> torch.Tensor:
    """All ranks' 1-D `x` concatenated, though their lengths differ (all_gather needs one
    length: pad with NaN to the longest, then drop the padding)."""
    count = torch.tensor(x.numel(), device=x.device)
    dist.all_reduce(count, op=dist.ReduceOp.MAX)
    longest = int(count.item())
    if longest == 0:
        return x
    padded = torch.full((longest,), math.nan, dtype=x.dtype, device=x.device)
    padded[:x.numel()] = x
    out = [torch.empty_like(padded) for _ in range(dist.get_world_size())]
    dist.all_gather(out, padded)
    flat = torch.cat(out)
    return flat[~torch.isnan(flat)]
