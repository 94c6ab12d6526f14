"""Training: the Trainer, samplers, augmentations, checkpoints."""
from faceforge.train.trainer import TrainConfig, Trainer, arcface_preprocess, init_distributed

__all__ = ["TrainConfig", "Trainer", "arcface_preprocess", "init_distributed"]
