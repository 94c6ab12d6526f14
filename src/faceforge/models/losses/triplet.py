"""Batch-hard triplet loss (Hermans et al. 2017) on L2-normalised embeddings.

For each anchor: its farthest same-identity sample and its nearest other-identity sample;
loss = mean over anchors of relu(d(a, p) − d(a, n) + margin). The diagonal and every
same-identity pair are excluded from the negatives (a known bug elsewhere picked the anchor
itself as its hardest negative). Anchors without a positive or a negative are skipped.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from faceforge.models.heads.base import Head


class BatchHardTriplet(Head):
    needs_pk = True  # without several images per identity in a batch there is no positive

    def __init__(self, margin: float = 0.2) -> None:
        super().__init__()
        self.margin = float(margin)

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        e = F.normalize(emb)
        dist = torch.cdist(e, e).clamp_min(0)
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool, device=emb.device)
        pos_mask, neg_mask = same & ~eye, ~same
        hardest_pos = torch.where(pos_mask, dist, torch.full_like(dist, -1.0)).max(dim=1).values
        hardest_neg = torch.where(neg_mask, dist, torch.full_like(dist, float("inf"))).min(dim=1).values
        valid = pos_mask.any(1) & neg_mask.any(1)
        if not valid.any():
            return emb.sum() * 0.0  # keeps the graph; no informative triplet in this batch
        return F.relu(hardest_pos[valid] - hardest_neg[valid] + self.margin).mean()
