"""Build a head or loss from a config dict (the `head:` section of a training YAML)."""
from __future__ import annotations

from torch import nn

from faceforge.core.errors import FaceForgeError
from faceforge.models.heads.fc import FCHead, PartialFC, SoftmaxHead
from faceforge.models.heads.margins import AdaCos, CombinedMargin
from faceforge.models.losses import BatchHardTriplet, WeightedSum

HEAD_TYPES = ("softmax", "arcface", "cosface", "combined", "adacos", "adacos-fixed", "triplet")


def build_head(cfg: dict, in_features: int, num_classes: int) -> nn.Module:
    """type: softmax | arcface | cosface | combined | adacos | adacos-fixed | triplet;
    s, m (or m1, m2, m3); partial_fc: sample rate (0 = off); init: class_means (weight
    imprinting, applied by train.config.build_trainer); triplet_weight: add
    weight × batch-hard triplet (margin `triplet_margin`) to a margin head."""
    kind = cfg.get("type", "arcface")
    if kind == "triplet":
        return BatchHardTriplet(cfg.get("triplet_margin", 0.2))
    if kind == "softmax":
        head: nn.Module = SoftmaxHead(in_features, num_classes)
    else:
        s = float(cfg.get("s", 64.0))
        if kind == "arcface":
            margin = CombinedMargin(s, 1.0, float(cfg.get("m", 0.5)), 0.0)
        elif kind == "cosface":
            margin = CombinedMargin(s, 1.0, 0.0, float(cfg.get("m", 0.4)))
        elif kind == "combined":
            margin = CombinedMargin(s, float(cfg.get("m1", 1.0)), float(cfg.get("m2", 0.5)), float(cfg.get("m3", 0.0)))
        elif kind in ("adacos", "adacos-fixed"):
            margin = AdaCos(num_classes, dynamic=kind == "adacos")
        else:
            raise FaceForgeError(f"unknown head type {kind!r}; one of {', '.join(HEAD_TYPES)}")
        rate = float(cfg.get("partial_fc", 0.0))
        head = PartialFC(in_features, num_classes, margin, rate) if rate > 0 else FCHead(in_features, num_classes, margin)
    w = float(cfg.get("triplet_weight", 0.0))
    if w > 0:
        return WeightedSum({kind: (head, 1.0), "triplet": (BatchHardTriplet(cfg.get("triplet_margin", 0.2)), w)})
    return head
