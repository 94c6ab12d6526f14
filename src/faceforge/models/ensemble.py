"""Named ensembles: several embedders as one, their unit embeddings concatenated.

The cosine of two concatenated vectors (each part L2-normalised, the whole divided by √n)
is the mean of the members' cosines, so an ensemble is score fusion that still works
wherever one embedding per face is expected (galleries, clustering, evaluation). Each
member aligns the face on its own template; `align` packs the members' crops into one flat
uint8 row so that batching code can treat an ensemble's crops like any other's.
"""
from __future__ import annotations

import numpy as np

from faceforge.core.errors import FaceForgeError
from faceforge.models.cards import SFACE_DLIB_R29, ModelCard
from faceforge.models.embedders import Embedder, _l2n, create_embedder, register_embedder
from faceforge.vision.face import Face


class EnsembleEmbedder(Embedder):
    """Subclasses name the members and carry the ensemble's card (its own measured threshold)."""

    members: tuple[str, ...] = ()
    card: ModelCard

    def __init__(self, device: str = "auto", flip: bool = False, batch_size: int = 64) -> None:
        super().__init__(flip=flip, batch_size=batch_size)
        self.parts = [create_embedder(m, device=device, flip=flip, batch_size=batch_size) for m in self.members]
        self._shapes = [(e.spec.size, e.spec.size, 3) for e in self.parts]
        self._bounds = np.cumsum([0] + [int(np.prod(s)) for s in self._shapes])

    def align(self, image: np.ndarray, face: Face) -> np.ndarray:
        return np.concatenate([e.align(image, face).ravel() for e in self.parts])

    def empty_crops(self) -> np.ndarray:
        return np.zeros((0, int(self._bounds[-1])), np.uint8)

    def _check_crops(self, crops) -> np.ndarray:
        crops = np.asarray(crops)
        if crops.ndim != 2 or crops.shape[1] != self._bounds[-1] or crops.dtype != np.uint8:
            raise FaceForgeError(f"{self.name} expects the packed crops its align() gives (N×{self._bounds[-1]} "
                                 f"uint8), got {crops.shape} {crops.dtype}")
        return crops

    def split(self, crops: np.ndarray) -> list[np.ndarray]:
        """Packed rows → each member's N×S×S×3 crops."""
        crops = self._check_crops(crops)
        return [np.ascontiguousarray(crops[:, a:b]).reshape(-1, *s)
                for a, b, s in zip(self._bounds[:-1], self._bounds[1:], self._shapes)]

    def _pack(self, parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([p.reshape(len(p), -1) for p in parts], axis=1)

    def mirror(self, crops: np.ndarray) -> np.ndarray:
        return self._pack([e.mirror(p) for e, p in zip(self.parts, self.split(crops))])

    def embed_raw(self, crops) -> np.ndarray:
        """The members' unit embeddings side by side, scaled by 1/√n (unit length overall):
        an ensemble has no meaningful raw norm."""
        parts = self.split(crops)
        return np.concatenate([_l2n(e.embed_raw(p)) for e, p in zip(self.parts, parts)], axis=1) \
            / np.sqrt(len(self.parts))

    def embed_crops(self, crops, raw: np.ndarray | None = None) -> np.ndarray:
        """Each member's embedding (with its flip test when on), concatenated, normalised."""
        parts = self.split(crops)
        return _l2n(np.concatenate([e.embed_crops(p) for e, p in zip(self.parts, parts)], axis=1))


@register_embedder("sface+dlib-r29")
class SFaceDlibR29(EnsembleEmbedder):
    """SFace and dlib-r29: the pair's fusion is the best LFW result of the shipped models."""

    members = ("sface", "dlib-r29")
    card = SFACE_DLIB_R29
