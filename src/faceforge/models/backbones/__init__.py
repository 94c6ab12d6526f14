"""Backbones: create_backbone(name, num_features=...), list_backbones()."""
from faceforge.models.backbones.registry import BACKBONES, create_backbone, list_backbones, register_backbone

__all__ = ["BACKBONES", "create_backbone", "list_backbones", "register_backbone"]
