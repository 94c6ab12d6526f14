"""Any timm model as a face backbone (`timm:<name>`, extra `faceforge[timm]`).

timm's feature extractor (num_classes=0) is followed by the embedding neck of the person
re-id reference (backbones.neck: Linear → BatchNorm1d → ReLU → Linear, optional BNNeck).
Weights are never fetched here: pass `weights=` in the model config to load a local file.
"""
from __future__ import annotations

import torch
from torch import nn

from faceforge.core.errors import FaceForgeError
from faceforge.core.extras import require
from faceforge.models.backbones.neck import EmbeddingNeck


class TimmBackbone(nn.Module):
    def __init__(self, body: nn.Module, num_features: int, hidden: int | None = None, bnneck: bool = False) -> None:
        super().__init__()
        self.body = body
        self.num_features = num_features
        self.neck = EmbeddingNeck(int(body.num_features), num_features, hidden, bnneck)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.body(x))


def create_timm_backbone(name: str, num_features: int = 512, hidden: int | None = None, bnneck: bool = False,
                         **timm_kwargs) -> TimmBackbone:
    timm = require("timm", "timm", "a timm:<name> backbone")  # torchvision too, which timm imports
    if timm_kwargs.pop("pretrained", False):
        raise FaceForgeError("timm weights are not downloaded at run time: set model.weights to a local file")
    try:
        body = timm.create_model(name, pretrained=False, num_classes=0, **timm_kwargs)
    except RuntimeError as exc:  # timm's "Unknown model"
        raise FaceForgeError(f"timm has no model {name!r}: {exc}") from None
    return TimmBackbone(body, num_features, hidden, bnneck)
