"""Backbone registry in the style of timm: create_backbone(name, **kw), list_backbones()."""
from __future__ import annotations

from typing import Callable

from torch import nn

from faceforge.core.errors import FaceForgeError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = fn
        return fn
    return wrap


def list_backbones() -> list[str]:
    return sorted(_REGISTRY)


def create_backbone(name: str, **kwargs) -> nn.Module:
    """Build a backbone by name; `num_features` sets the embedding size where supported."""
    if name.startswith("timm:"):
        from faceforge.models.backbones.timm_backbone import create_timm_backbone
        return create_timm_backbone(name[5:], **kwargs)
    if name not in _REGISTRY:
        raise FaceForgeError(f"unknown backbone {name!r}; available: {', '.join(list_backbones())}, timm:<name>")
    return _REGISTRY[name](**kwargs)
