"""Embed aligned faces and score their quality in one forward pass of a PyTorch embedder."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from faceforge.core.errors import FaceForgeError
from faceforge.quality.estimator import QualityEstimator, weights_fingerprint
from faceforge.quality.features import BNInputFeatures


def _embedding_layer(model: nn.Module, forward) -> nn.Linear | None:
    """The Linear layer that runs last in `forward()` (a call of the model): SER-FIQ's dropout
    goes on its input. Registration order is not forward order (a module may define its
    output layer first)."""
    called: list[nn.Linear] = []
    handles = [m.register_forward_hook(lambda mod, i, o: called.append(mod))
               for m in model.modules() if isinstance(m, nn.Linear)]
    try:
        forward()
    finally:
        for h in handles:
            h.remove()
    return called[-1] if called else None


class QualityScorer:
    """Wraps an embedder whose `model` is a torch network with BatchNorm (dlib-r29, or any
    backbone behind the Embedder interface). `features` returns the raw embeddings with the
    BN-input features of the same forward; `embed_and_score` what a pipeline needs."""

    def __init__(self, embedder, estimator: QualityEstimator | None = None, kind: str | None = None) -> None:
        model = getattr(embedder, "model", None)
        if not isinstance(model, nn.Module):
            raise FaceForgeError(f"embedder {embedder.name!r} is not a PyTorch network: BatchNorm quality "
                                 "features need one (e.g. dlib-r29)")
        self.embedder, self.estimator, self.model = embedder, estimator, model
        self.kind = kind or (estimator.manifest["feature_kind"] if estimator else "var")
        self.hooks = BNInputFeatures(model, self.kind)
        self.fingerprint = weights_fingerprint(model)
        probe = np.zeros((1, *embedder.spec.shape, 3), np.uint8)
        self.features(probe)  # fixes the layer order
        self.embedding_layer = _embedding_layer(model, lambda: embedder.embed_raw(probe))
        if estimator is not None:
            estimator.check(embedder.name, self.hooks.layer_names, self.kind, self.fingerprint)

    @property
    def layer_names(self) -> list[str]:
        return self.hooks.layer_names

    def features(self, crops: np.ndarray, embedding_layer_input: bool = False):
        """(raw N×D embeddings, N×2L features[, N×K inputs of the last Linear for SER-FIQ])."""
        captured: list[torch.Tensor] = []
        layer = self.embedding_layer if embedding_layer_input else None
        if embedding_layer_input and layer is None:
            raise FaceForgeError(f"{self.embedder.name} has no Linear embedding layer for SER-FIQ")
        handle = layer.register_forward_pre_hook(lambda m, i: captured.append(i[0].detach().cpu())) if layer else None
        try:
            with self.hooks:
                raw = self.embedder.embed_raw(crops)
                feats = self.hooks.pop()
        finally:
            if handle is not None:
                handle.remove()
        if embedding_layer_input:
            return raw, feats, (torch.cat(captured) if captured else torch.zeros(0, layer.in_features)), layer
        return raw, feats

    def embed_and_score(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """L2-normalised embeddings (flip test if the embedder has it) and scores 0..100."""
        if self.estimator is None:
            raise FaceForgeError("no quality estimator loaded")
        raw, feats = self.features(crops)
        return self.embedder.embed_crops(crops, raw=raw), self.estimator.score(feats)
