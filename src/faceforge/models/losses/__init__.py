"""Metric-learning losses that work on embeddings directly."""
from faceforge.models.losses.combined import WeightedSum
from faceforge.models.losses.triplet import BatchHardTriplet

__all__ = ["BatchHardTriplet", "WeightedSum"]
