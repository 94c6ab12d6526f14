"""What `faceforge gallery identify` and the service do: faces in images, folders or videos →
gallery decisions, and where the decision threshold comes from."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from faceforge.core.errors import FaceForgeError
from faceforge.io.images import list_images
from faceforge.io.video import is_video, video_frames
from faceforge.pipeline import FacePipeline, FaceRecord
from faceforge.search.decision import Decision, gallery_threshold, identify, threshold_from_eval
from faceforge.search.gallery import Gallery

SEARCH_BATCH = 256  # faces per gallery call


def resolve_threshold(pipeline: FacePipeline, threshold: float | None = None, eval_json: str | Path | None = None,
                      fpr: float = 1e-3, method: str | None = None, gallery_size: int | None = None) -> float:
    """Given, else read from an evaluation JSON, else the model's known threshold. With a
    `gallery_size` (naming people from a gallery), `fpr` is the false-positive
    identification rate, and a 1:1 evaluation's threshold is taken at fpr / gallery_size
    (gallery_threshold); without one, it is the 1:1 rate of a verification."""
    if threshold is not None:
        return float(threshold)
    if eval_json is not None:
        if gallery_size is not None:
            return gallery_threshold(eval_json, fpr, max(int(gallery_size), 1), method)[0]
        return threshold_from_eval(eval_json, fpr, method)
    if pipeline.embedder.threshold is None:
        raise FaceForgeError(f"{pipeline.embedder.name} has no known threshold: give one, or an evaluation JSON "
                             "and a target FPR")
    return float(pipeline.embedder.threshold)


def _faces(face_list, decisions: list[Decision], with_hits: bool) -> list[dict]:
    return [{"box": [round(float(x), 1) for x in f.box], "det_score": round(float(f.score), 4),
             **d.to_dict(with_hits)} for f, d in zip(face_list, decisions)]


def identify_files(gallery: Gallery, pipeline: FacePipeline, files: Iterable[str | Path], k: int = 1,
                   threshold: float | None = None, min_quality: float | None = None,
                   with_hits: bool = False) -> Iterator[dict]:
    """One result per file: its faces with decisions, or the reason it was skipped. Faces of
    many files are embedded and searched together."""
    model = pipeline.embedder.name
    pending: list[FaceRecord] = []

    def flush() -> Iterator[dict]:
        if not pending:
            return
        decisions = identify(gallery, np.stack([r.embedding for r in pending]), k, threshold, min_quality, model)
        by_path: dict[str, list] = {}
        for r, d in zip(pending, decisions):
            by_path.setdefault(r.path, []).append((r.face, d))
        for path, fd in by_path.items():
            yield {"source": path, "faces": _faces([f for f, _ in fd], [d for _, d in fd], with_hits)}
        pending.clear()

    for item in pipeline.process_files(files, select="all"):
        if isinstance(item, FaceRecord):
            if pending and len(pending) >= SEARCH_BATCH and item.path != pending[-1].path:
                yield from flush()
            pending.append(item)
        else:
            yield {"source": item.path, "faces": [], "skipped": item.reason}
    yield from flush()


def identify_video(gallery: Gallery, pipeline: FacePipeline, video: str | Path, every: int = 10, k: int = 1,
                   threshold: float | None = None, min_quality: float | None = None,
                   with_hits: bool = False) -> Iterator[dict]:
    """One result per sampled frame that shows a face."""
    model = pipeline.embedder.name
    for i, t, frame in video_frames(video, every):
        faces = pipeline.detect(frame)
        if not faces:
            continue
        decisions = identify(gallery, pipeline.embed_faces(frame, faces), k, threshold, min_quality, model)
        yield {"source": str(video), "frame": i, "time_s": round(t, 3), "faces": _faces(faces, decisions, with_hits)}


def identify_sources(gallery: Gallery, pipeline: FacePipeline, sources: Iterable[str | Path], every: int = 10,
                     **kw) -> Iterator[dict]:
    """Images, folders of images (recursively) and video files, in the order given."""
    images: list[Path] = []
    for src in map(Path, sources):
        if not src.exists():
            raise FaceForgeError("not found", src)
        if src.is_file() and is_video(src):
            yield from identify_files(gallery, pipeline, images, **kw)
            images = []
            yield from identify_video(gallery, pipeline, src, every, **kw)
        else:
            images += list_images(src)
    yield from identify_files(gallery, pipeline, images, **kw)
