"""The embedding neck of the person re-id reference, shared by every re-id backbone.

Pooled features (width) → Linear → BatchNorm1d → ReLU → Linear → num_features: the
reference puts 1000 → 840 → BN → ReLU → 320 after EfficientNet's classifier; here the first
layer takes the pooled features directly (timm's `num_classes=0`), and `hidden` defaults to
the mean of the two widths, as 840 is of 1000 and ~700.

`bnneck=True` appends the BNNeck of the strong re-id baseline (Luo et al., 2019): a
BatchNorm1d whose shift is frozen at zero, so that the classifier sees a feature centred
and scaled per dimension while its direction, which cosine retrieval uses, stays free.
Both the class loss and a triplet term see that normalised feature here; the baseline
feeds the triplet the feature before the BatchNorm, which a single-output backbone cannot.
"""
from __future__ import annotations

from torch import nn


class EmbeddingNeck(nn.Sequential):
    """A Sequential, so that its parameters keep the names (`neck.0.weight`, ...) of weights
    saved before it was shared."""

    def __init__(self, width: int, num_features: int, hidden: int | None = None, bnneck: bool = False) -> None:
        hidden = hidden or (width + num_features) // 2
        layers: list[nn.Module] = [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                   nn.Linear(hidden, num_features)]
        if bnneck:
            bn = nn.BatchNorm1d(num_features)
            bn.bias.requires_grad_(False)
            layers.append(bn)
        super().__init__(*layers)
