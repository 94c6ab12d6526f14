"""Backbones: create_backbone(name, num_features=...), list_backbones()."""
from faceforge.models.backbones.registry import create_backbone, list_backbones, register_backbone
from faceforge.models.backbones import iresnet as _iresnet  # noqa: F401  (registers r18…r200)
from faceforge.models.backbones import mobilefacenet as _mbf  # noqa: F401  (registers mbf)

__all__ = ["create_backbone", "list_backbones", "register_backbone"]
