"""Backbones: create_backbone(name, num_features=...), list_backbones()."""
from faceforge.models.backbones.registry import create_backbone, list_backbones, register_backbone
from faceforge.models.backbones import iresnet as _iresnet  # noqa: F401  (registers r18…r200)
from faceforge.models.backbones import mobilefacenet as _mbf  # noqa: F401  (registers mbf)
from faceforge.models.backbones import dlib as _dlib  # noqa: F401  (registers dlib-r29)

__all__ = ["create_backbone", "list_backbones", "register_backbone"]
