"""Backbone registry in the style of timm: create_backbone(name, **kw), list_backbones().

`timm:<name>` builds any timm model with an embedding neck (extra `faceforge[timm]`).
"""
from __future__ import annotations

from torch import nn

from faceforge.core.registry import Registry


def _timm(name: str, **kwargs) -> nn.Module:
    from faceforge.models.backbones.timm_backbone import create_timm_backbone
    return create_timm_backbone(name, **kwargs)


BACKBONES: Registry[nn.Module] = Registry("backbone", modules=(
    "faceforge.models.backbones.iresnet", "faceforge.models.backbones.mobilefacenet",
    "faceforge.models.backbones.dlib", "faceforge.models.backbones.osnet"))
BACKBONES.register_prefix("timm:", _timm, "timm:<name>")
register_backbone = BACKBONES.register


def list_backbones() -> list[str]:
    return BACKBONES.names()


def create_backbone(name: str, **kwargs) -> nn.Module:
    """Build a backbone by name; `num_features` sets the embedding size where supported,
    `pretrained=False` skips shipped weights where a backbone has them."""
    return BACKBONES.create(name, **kwargs)


def create_untrained_backbone(name: str, **kwargs) -> nn.Module:
    """The architecture alone, for weights that come from a file: a backbone that would
    load shipped weights (`pretrained=True` by default, like dlib-r29) is built without."""
    import inspect
    factory = BACKBONES.get(name) if name in BACKBONES else None
    if factory is not None and "pretrained" in inspect.signature(factory).parameters:
        kwargs = {**kwargs, "pretrained": False}
    return create_backbone(name, **kwargs)
