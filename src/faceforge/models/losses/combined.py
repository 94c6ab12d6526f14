"""Weighted sums of losses, e.g. ArcFace + 5·triplet as in the reference."""
from __future__ import annotations

import torch
from torch import nn

from faceforge.models.heads.base import Head, full_state_dict, needs_pk, sharded_parameters


class WeightedSum(Head):
    """loss = Σ w_i · loss_i(emb, labels); each part stays inspectable via `last`. It has
    its parts' needs: P×K batches if any part needs them, their sharded parameters."""

    def __init__(self, parts: dict[str, tuple[nn.Module, float]]) -> None:
        super().__init__()
        self.parts = nn.ModuleDict({k: m for k, (m, _) in parts.items()})
        self.weights = {k: float(w) for k, (_, w) in parts.items()}
        self.last: dict[str, float] = {}
        self.needs_pk = any(needs_pk(m) for m in self.parts.values())

    def sharded_parameters(self) -> list[nn.Parameter]:
        return [p for m in self.parts.values() for p in sharded_parameters(m)]

    def full_state_dict(self) -> dict:
        return {f"parts.{k}.{n}": v for k, m in self.parts.items() for n, v in full_state_dict(m).items()}

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        total = emb.new_zeros(())
        for k, m in self.parts.items():
            v = m(emb, labels)
            self.last[k] = float(v.detach())
            total = total + self.weights[k] * v
        return total
