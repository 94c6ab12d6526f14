"""Build a head or loss from a config dict (the `head:` section of a training YAML).

Each head type is a factory `(cfg, in_features, num_classes) -> nn.Module` in the HEADS
registry; a new type is one decorated function (here or in a plugin).
"""
from __future__ import annotations

import torch
from torch import nn

from faceforge.core.registry import Registry
from faceforge.models.heads.base import Head
from faceforge.models.heads.fc import FCHead, PartialFC, SoftmaxHead
from faceforge.models.heads.margins import AdaCos, CombinedMargin
from faceforge.models.losses import BatchHardTriplet, WeightedSum

HEADS: Registry[nn.Module] = Registry("head type")


def _margin_head(cfg: dict, in_features: int, num_classes: int, margin: nn.Module) -> nn.Module:
    """The margin on a full FC layer, or on Partial FC when `partial_fc` (sample rate) > 0."""
    rate = float(cfg.get("partial_fc", 0.0))
    return PartialFC(in_features, num_classes, margin, rate) if rate > 0 else FCHead(in_features, num_classes, margin)


@HEADS.register("softmax")
def _softmax(cfg: dict, in_features: int, num_classes: int) -> nn.Module:
    return SoftmaxHead(in_features, num_classes)


@HEADS.register("arcface")
def _arcface(cfg: dict, in_features: int, num_classes: int) -> nn.Module:
    return _margin_head(cfg, in_features, num_classes, CombinedMargin(float(cfg.get("s", 64.0)), 1.0,
                                                                      float(cfg.get("m", 0.5)), 0.0))


@HEADS.register("cosface")
def _cosface(cfg: dict, in_features: int, num_classes: int) -> nn.Module:
    return _margin_head(cfg, in_features, num_classes, CombinedMargin(float(cfg.get("s", 64.0)), 1.0, 0.0,
                                                                      float(cfg.get("m", 0.4))))


@HEADS.register("combined")
def _combined(cfg: dict, in_features: int, num_classes: int) -> nn.Module:
    margin = CombinedMargin(float(cfg.get("s", 64.0)), float(cfg.get("m1", 1.0)), float(cfg.get("m2", 0.5)),
                            float(cfg.get("m3", 0.0)))
    return _margin_head(cfg, in_features, num_classes, margin)


@HEADS.register("adacos")
def _adacos(cfg: dict, in_features: int, num_classes: int) -> nn.Module:
    return _margin_head(cfg, in_features, num_classes, AdaCos(num_classes, dynamic=True))


@HEADS.register("adacos-fixed")
def _adacos_fixed(cfg: dict, in_features: int, num_classes: int) -> nn.Module:
    return _margin_head(cfg, in_features, num_classes, AdaCos(num_classes, dynamic=False))


class NoHead(Head):
    """No class loss at all: the student learns from a distillation loss alone (which needs
    no labels, so unlabelled faces can train it)."""

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return emb.sum() * 0.0


@HEADS.register("none")
def _none(cfg: dict, in_features: int, num_classes: int) -> nn.Module:
    return NoHead()


@HEADS.register("triplet")
def _triplet(cfg: dict, in_features: int, num_classes: int) -> nn.Module:
    return BatchHardTriplet(cfg.get("triplet_margin", 0.2))


HEAD_TYPES = tuple(HEADS.names())


def build_head(cfg: dict, in_features: int, num_classes: int) -> nn.Module:
    """type: softmax | arcface | cosface | combined | adacos | adacos-fixed | triplet | none;
    s, m (or m1, m2, m3); partial_fc: sample rate (0 = off); init: class_means (weight
    imprinting, applied by train.config.build_trainer); triplet_weight: add
    weight × batch-hard triplet (margin `triplet_margin`) to a margin head."""
    kind = cfg.get("type", "arcface")
    head = HEADS.get(kind)(cfg, in_features, num_classes)
    w = float(cfg.get("triplet_weight", 0.0))
    if w > 0 and kind != "triplet":
        return WeightedSum({kind: (head, 1.0), "triplet": (BatchHardTriplet(cfg.get("triplet_margin", 0.2)), w)})
    return head
