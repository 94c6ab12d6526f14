"""One-line calls for the common case: verify two photos, represent the faces of one, find
who a face is in a gallery.

    import faceforge
    faceforge.verify("a.jpg", "b.jpg").same          # True / False
    faceforge.represent(photo)[0].embedding         # 128-d unit vector
    faceforge.find("probe.jpg", "gallery.db")[0]    # the best matches of the first face

Images may be paths, H×W×3 RGB uint8 arrays (H×W grey and H×W×4 RGBA are converted) or
PIL images. Pipelines are built once per (detector, model, device, flip) and reused; pass
`pipeline=` to use your own.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from faceforge.core.errors import FaceForgeError, ImageReadError, NoFaceError
from faceforge.io.images import load_image, pil_to_rgb
from faceforge.pipeline import FacePipeline, Select
from faceforge.vision.face import Face

if TYPE_CHECKING:
    from faceforge.search.gallery import Hit

ImageLike = Union[str, Path, np.ndarray, Any]  # Any: a PIL.Image.Image


@dataclass(frozen=True)
class VerifyResult:
    same: bool
    score: float
    threshold: float
    model: str
    faces: tuple[Face, Face]  # the face used in each image (the largest)

    def to_dict(self) -> dict:
        return {"same": self.same, "score": round(self.score, 4), "threshold": self.threshold, "model": self.model,
                "faces": [f.to_dict() for f in self.faces]}


@dataclass(frozen=True)
class Representation:
    face: Face
    embedding: np.ndarray  # L2-normalised


def to_rgb(image: ImageLike, name: str = "image") -> np.ndarray:
    """Any accepted image form → H×W×3 RGB uint8; an error names what was wrong."""
    if isinstance(image, (str, Path)):
        return load_image(image)
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL
        return pil_to_rgb(image)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ImageReadError(f"expected a uint8 array, got {image.dtype}", name)
        if image.ndim == 2:
            return np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim == 3 and image.shape[2] in (3, 4):
            return np.ascontiguousarray(image[:, :, :3])
        raise ImageReadError(f"expected an H×W×3 RGB array, got shape {image.shape}", name)
    raise ImageReadError(f"not an image: {type(image).__name__} (give a path, a numpy array or a PIL image)", name)


@functools.lru_cache(maxsize=4)
def _cached_pipeline(detector: str, model: str, device: str, flip: bool) -> FacePipeline:
    return FacePipeline(detector=detector, embedder=model, device=device, flip=flip)


def get_pipeline(model: str = "sface", detector: str = "auto", device: str = "auto", flip: bool = False,
                 pipeline: FacePipeline | None = None) -> FacePipeline:
    """The given pipeline, or one built for these options (once per process)."""
    return pipeline if pipeline is not None else _cached_pipeline(detector, str(model), device, flip)


def _label(image: ImageLike, default: str) -> str:
    return str(image) if isinstance(image, (str, Path)) else default


def represent(image: ImageLike, model: str = "sface", detector: str = "auto", select: Select = "all",
              device: str = "auto", flip: bool = False, pipeline: FacePipeline | None = None) -> list[Representation]:
    """Every usable face of an image with its embedding (largest first); NoFaceError if none."""
    pipe = get_pipeline(model, detector, device, flip, pipeline)
    try:
        faces, emb = pipe.embed_image(to_rgb(image), select)
    except NoFaceError:
        raise NoFaceError("no face found", _label(image, "image")) from None
    return [Representation(f, e) for f, e in zip(faces, emb)]


def verify(a: ImageLike, b: ImageLike, model: str = "sface", detector: str = "auto", threshold: float | None = None,
           device: str = "auto", flip: bool = False, pipeline: FacePipeline | None = None) -> VerifyResult:
    """Are the largest faces of `a` and `b` the same person? The threshold defaults to the
    one measured for the model (its card); a model without one needs `threshold=`."""
    pipe = get_pipeline(model, detector, device, flip, pipeline)
    thr = pipe.embedder.threshold if threshold is None else float(threshold)
    if thr is None:
        raise FaceForgeError(f"{pipe.embedder.name} has no default threshold: pass threshold=")
    ra, rb = (represent(x, select="largest", pipeline=pipe)[0] for x in (a, b))
    score = float(np.dot(ra.embedding, rb.embedding))
    return VerifyResult(score >= thr, score, thr, pipe.embedder.name, (ra.face, rb.face))


def find(image: ImageLike, gallery, k: int = 5, model: str | None = None, detector: str = "auto",
         device: str = "auto", pipeline: FacePipeline | None = None) -> list[list["Hit"]]:
    """For each face of `image`, the k best gallery matches (best first). `gallery`: an open
    Gallery or its URI (gallery.db, faiss:DIR, http://host:19530); the model defaults to the
    one the gallery was enrolled with."""
    from faceforge.search.gallery import Gallery, open_gallery
    own = not isinstance(gallery, Gallery)
    g = open_gallery(gallery) if own else gallery
    try:
        pipe = get_pipeline(model or g.model or "sface", detector, device, pipeline=pipeline)
        faces = represent(image, pipeline=pipe)
        hits = g.search(np.stack([r.embedding for r in faces]), k, model=pipe.embedder.name)
    finally:
        if own:
            g.close()
    return hits
