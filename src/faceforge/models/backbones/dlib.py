"""dlib-r29 as a trainable backbone: the pretrained descriptor network with real BatchNorm
statistics (150×150 dlib chips in, 128-d out)."""
from __future__ import annotations

from faceforge.models.backbones.registry import register_backbone
from faceforge.models.dlib_r29 import DlibResNet29


@register_backbone("dlib-r29")
def dlib_r29(num_features: int = 128, pretrained: bool = True, **kw) -> DlibResNet29:
    """dlib's ResNet-29; pretrained=True loads the shipped weights (num_features must be 128)."""
    if not pretrained:
        return DlibResNet29(num_features=num_features)
    if num_features != 128:
        raise ValueError("the pretrained dlib-r29 has 128 features")
    from faceforge.models.embedders import DlibR29Embedder
    return DlibR29Embedder(device="cpu").model
