"""Classification heads and margins for training recognition models."""
from faceforge.models.heads.fc import FCHead, PartialFC, SoftmaxHead
from faceforge.models.heads.margins import AdaCos, ArcFace, CombinedMargin, CosFace

__all__ = ["AdaCos", "ArcFace", "CombinedMargin", "CosFace", "FCHead", "PartialFC", "SoftmaxHead"]
