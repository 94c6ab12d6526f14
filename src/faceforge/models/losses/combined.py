"""Weighted sums of losses, e.g. ArcFace + 5·triplet as in the reference."""
from __future__ import annotations

import torch
from torch import nn


class WeightedSum(nn.Module):
    """loss = Σ w_i · loss_i(emb, labels); each part stays inspectable via `last`."""

    def __init__(self, parts: dict[str, tuple[nn.Module, float]]) -> None:
        super().__init__()
        self.parts = nn.ModuleDict({k: m for k, (m, _) in parts.items()})
        self.weights = {k: float(w) for k, (_, w) in parts.items()}
        self.last: dict[str, float] = {}

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        total = emb.new_zeros(())
        for k, m in self.parts.items():
            v = m(emb, labels)
            self.last[k] = float(v.detach())
            total = total + self.weights[k] * v
        return total
