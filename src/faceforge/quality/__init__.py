"""Face image quality: BatchNorm-input features, labels, the CatBoost estimator,
scoring in the embedding's forward pass, baselines, filtering."""
from faceforge.quality.estimator import QualityEstimator, train_estimator
from faceforge.quality.features import BNInputFeatures
from faceforge.quality.labels import head_labels, leave_one_out_labels
from faceforge.quality.scorer import QualityScorer

__all__ = ["BNInputFeatures", "QualityEstimator", "QualityScorer", "head_labels", "leave_one_out_labels",
           "train_estimator"]
