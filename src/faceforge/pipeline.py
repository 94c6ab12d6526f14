"""FacePipeline: detect → five landmarks → align → embed, for files or arrays.

Both stages are injected (objects or registry names), so any detector works with any
embedder; batch work returns a skip record for every file it could not use instead of
stopping.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Literal, Protocol, Sequence

import numpy as np

from faceforge.core.errors import FaceForgeError, FileAccessError, NoFaceError
from faceforge.core.files import atomic_write_json, path_text
from faceforge.core.prefetch import prefetched
from faceforge.io.images import load_image
from faceforge.models.embedders import Embedder, create_embedder
from faceforge.vision.align import landmarks_plausible
from faceforge.vision.detectors import Detector, create_detector
from faceforge.vision.detectors.base import central_face
from faceforge.vision.face import Face

if TYPE_CHECKING:
    from faceforge.landmarks.landmarker import Landmarker

Select = Literal["all", "largest", "central"]


@dataclass
class FaceRecord:
    """One embedded face of one file."""

    path: str
    face_index: int
    face: Face
    embedding: np.ndarray
    quality: int | None = None


@dataclass
class Skip:
    """A file (or face) that was not used, and why."""

    path: str
    reason: str
    kind: str = "error"  # error | unreadable | no_face | implausible_landmarks

    def to_dict(self) -> dict:
        return {"path": self.path, "kind": self.kind, "reason": self.reason}


class CropScorer(Protocol):
    """Embeds aligned crops and scores their quality in the same pass (faceforge.quality)."""

    def embed_and_score(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class FacePipeline:
    detector: Detector | str = "auto"  # auto: yunet for face models, whole-image for body models
    embedder: Embedder | str = "sface"
    device: str = "auto"
    flip: bool = False
    batch_size: int = 32
    check_landmarks: bool = True
    detector_kwargs: dict = field(default_factory=dict)
    scorer: CropScorer | None = None  # wraps this pipeline's embedder; adds a quality per face
    # a learned landmark stage between detection and alignment: "hourglass" (the shipped
    # weights), a weights file, or a faceforge.landmarks.Landmarker; None = the detector's points
    landmarker: "Landmarker | str | Path | None" = None
    # decode and detect the next files in a thread while the current batch is embedded;
    # None: when this process may run on more than one core (on one, the thread only competes)
    prefetch: bool | None = None

    def __post_init__(self) -> None:
        if isinstance(self.embedder, (str, Path)):
            self.embedder = create_embedder(self.embedder, flip=self.flip, batch_size=self.batch_size,
                                            device=self.device)
        body = self.embedder.spec.template == "body"
        if self.detector == "auto":
            self.detector = "whole-image" if body else "auto"
        if isinstance(self.detector, str):
            self.detector = create_detector(self.detector, **{"device": self.device, **self.detector_kwargs})
        if body and getattr(self.detector, "has_landmarks", True):
            raise FaceForgeError(f"{self.embedder.name} embeds whole body images: use the detector 'whole-image' "
                                 f"(or auto), not the face detector {self.detector.name!r}")
        if not body and not getattr(self.detector, "has_landmarks", True):
            raise FaceForgeError(f"{self.embedder.name} aligns faces by their landmarks: detector "
                                 f"{self.detector.name!r} gives none (it is for body models)")
        if body:
            self.check_landmarks = False  # no face points to judge
        if self.landmarker is not None and body:
            raise FaceForgeError("a landmark stage is for face models; body models embed the whole box")
        if self.landmarker is not None:  # the detector's faces get the network's points
            from faceforge.landmarks.landmarker import with_landmarker
            self.detector = with_landmarker(self.detector, self.landmarker, self.device)
            self.landmarker = self.detector.landmarker

    def detect(self, image: np.ndarray) -> list[Face]:
        return self.detector.detect(image)

    def select(self, faces: list[Face], image_shape: tuple[int, ...], select: Select) -> list[Face]:
        if not faces:
            return []
        if select == "largest":
            return [max(faces, key=lambda f: f.area)]
        if select == "central":
            return [central_face(faces, image_shape)]
        return faces

    def embed_faces(self, image: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
        """Embeddings (N×D) of given faces of one image."""
        crops = np.stack([self.embedder.align(image, f) for f in faces]) if faces else self.embedder.empty_crops()
        return self.embedder.embed_crops(crops)

    def usable_faces(self, image: np.ndarray, select: Select = "all") -> list[Face]:
        """Detected faces, the selected ones, with plausible landmarks (when checked)."""
        faces = self.select(self.detect(image), image.shape, select)
        return [f for f in faces if landmarks_plausible(f.landmarks)] if self.check_landmarks else faces

    def embed_images(self, images: Sequence[np.ndarray], select: Select = "all"
                     ) -> list[tuple[list[Face], np.ndarray] | None]:
        """embed_image for several images, their crops embedded in one batch; None for an
        image without a usable face."""
        found = [self.usable_faces(im, select) for im in images]
        crops = [self.embedder.align(im, f) for im, faces in zip(images, found) for f in faces]
        embs = self.embedder.embed_crops(np.stack(crops) if crops else self.embedder.empty_crops())
        out: list[tuple[list[Face], np.ndarray] | None] = []
        start = 0
        for faces in found:
            out.append((faces, embs[start:start + len(faces)]) if faces else None)
            start += len(faces)
        return out

    def embed_image(self, image: np.ndarray, select: Select = "all") -> tuple[list[Face], np.ndarray]:
        """Detect, keep the selected faces with plausible landmarks, embed them.
        Raises NoFaceError when nothing usable is found."""
        res = self.embed_images([image], select)[0]
        if res is None:
            raise NoFaceError("no face found")
        return res

    def embed_file(self, path: str | Path, select: Select = "all") -> tuple[list[Face], np.ndarray]:
        try:
            return self.embed_image(load_image(path), select)
        except NoFaceError:
            raise NoFaceError("no face found", path) from None

    def process_files(self, paths: Iterable[str | Path], select: Select = "all") -> Iterator[FaceRecord | Skip]:
        """Yield a FaceRecord per embedded face, or one Skip per unusable file; a file's
        records come one after another. Records name files by `path_text` (valid Unicode
        even when the file name is not UTF-8). A Skip of kind `unreadable` (permission, I/O,
        not a regular file) may succeed later; the other kinds depend on the content.

        Crops of several files are embedded together (batch_size crops at a time); with
        `prefetch`, a thread decodes and detects the next files meanwhile.
        """
        pending: list[tuple[str, int, Face, np.ndarray]] = []

        def flush() -> Iterator[FaceRecord]:
            if not pending:
                return
            crops = np.stack([p[3] for p in pending])
            if self.scorer is not None:
                embs, quality = self.scorer.embed_and_score(crops)
            else:
                embs, quality = self.embedder.embed_crops(crops), [None] * len(crops)
            for (path, k, face, _), e, q in zip(pending, embs, quality):
                yield FaceRecord(path=path, face_index=k, face=face, embedding=e,
                                 quality=None if q is None else int(q))
            pending.clear()

        def read(file: str | Path) -> tuple[str, np.ndarray, list[Face]] | Skip:
            """Decode, detect, select and check one file (the part that runs ahead in a thread)."""
            path = path_text(file)
            try:
                image = load_image(file)
                faces = self.select(self.detect(image), image.shape, select)
            except FaceForgeError as exc:
                return Skip(path, exc.reason, "unreadable" if isinstance(exc, FileAccessError) else "error")
            if not faces:
                return Skip(path, "no face found", "no_face")
            good = [f for f in faces if landmarks_plausible(f.landmarks)] if self.check_landmarks else faces
            if not good:
                return Skip(path, "landmarks failed the plausibility check", "implausible_landmarks")
            return path, image, good

        # one reader thread: a detector object is not safe to call from two threads at once
        ahead = self.prefetch if self.prefetch is not None else len(os.sched_getaffinity(0)) > 1
        for item in prefetched(read, paths, workers=int(ahead), depth=2 * self.batch_size):
            if isinstance(item, Skip):
                yield item
                continue
            path, image, good = item
            for k, f in enumerate(good):
                pending.append((path, k, f, self.embedder.align(image, f)))
            if len(pending) >= self.batch_size:
                yield from flush()
        yield from flush()


def embed_folder(pipeline: FacePipeline, folder: str | Path, output: str | Path, select: Select = "all",
                 checkpoint_every: int = 256, show_progress: bool | None = None, overwrite: bool = False,
                 shard: tuple[int, int] | None = None, wait_poll_s: float = 1.0) -> dict:
    """Embed every face of every image under `folder` into an embeddings Parquet. Resumable:
    files already written (or skipped, unchanged, for a reason that still holds) by an
    interrupted run are not redone. An output holding another model's or detector's rows is
    refused unless `overwrite`. The identity of an image is its first sub-folder under
    `folder`. With a scorer on the pipeline each row also gets a `quality` (0..100).

    Sharded (`shard=(rank, world)`, by default what a launcher such as torchrun set in RANK
    and WORLD_SIZE): rank r embeds every world-th file of the sorted list, starting at r, into
    its own resumable output beside `output`, and says so in a marker; rank 0 then waits for
    every rank's marker of this file list and merges all of them into `output`, in the order
    one process would have written. Ranks on several machines need `output` on a shared disk."""
    from faceforge.core.device import launcher_rank
    from faceforge.io.embeddings import EmbeddingWriter, merge_shards, shard_done_marker, shard_output
    from faceforge.io.images import list_images

    folder = Path(folder)
    files = list_images(folder)
    rank, world = launcher_rank() if shard is None else shard
    if world == 1:
        return _embed_files(pipeline, files, folder, output, select, checkpoint_every, show_progress, overwrite)

    output = Path(output)
    # what a merged output already holds (or skipped for a reason that still holds) is not redone
    prior = None if overwrite or not output.exists() else \
        EmbeddingWriter(output, model=pipeline.embedder.name, detector=pipeline.detector.name)
    signatures = [hashlib.sha1("\n".join(path_text(f) for f in files[r::world]).encode("utf-8", "surrogatepass"))
                  .hexdigest() for r in range(world)]

    shard_done_marker(output, rank, world).unlink(missing_ok=True)  # this rank's shard is not done (yet)
    todo = [f for f in files[rank::world] if prior is None or not prior.is_done(f)]
    res = _embed_files(pipeline, todo, folder, shard_output(output, rank, world), select, checkpoint_every,
                       show_progress, overwrite)
    res.update(rank=rank, world_size=world, files_signature=signatures[rank], files=len(files[rank::world]))
    atomic_write_json(shard_done_marker(output, rank, world), res)
    if rank != 0:
        return {**res, "merged_by": "rank 0", "output": str(output)}
    # a marker of an earlier run over another file list does not count
    while any(_marker_signature(shard_done_marker(output, r, world)) != signatures[r] for r in range(1, world)):
        time.sleep(wait_poll_s)
    table = merge_shards(output, world, [path_text(f) for f in files], replace=overwrite)
    return {**res, "output": str(output), "merged_rows": table.num_rows,
            "skip_log": str(output.with_name(output.name + ".skips.jsonl"))}


def _marker_signature(marker: Path) -> str | None:
    try:
        return json.loads(marker.read_text(encoding="utf-8")).get("files_signature")
    except (OSError, ValueError, AttributeError):
        return None  # not there yet, or being written


def _embed_files(pipeline: FacePipeline, files: list[Path], folder: Path, output: str | Path, select: Select,
                 checkpoint_every: int, show_progress: bool | None, overwrite: bool) -> dict:
    from faceforge.core.progress import progress
    from faceforge.io.embeddings import EmbeddingWriter

    writer = EmbeddingWriter(output, chunk_size=checkpoint_every, quality=pipeline.scorer is not None,
                             model=pipeline.embedder.name, detector=pipeline.detector.name, overwrite=overwrite)
    todo = [f for f in files if not writer.is_done(f)]
    n_faces = n_skips = 0
    root = folder if folder.is_dir() else folder.parent
    with writer:
        for rec in progress(pipeline.process_files(todo, select=select), "embedding", total=len(todo),
                            enabled=show_progress):
            if isinstance(rec, FaceRecord):
                rel = Path(rec.path).relative_to(path_text(root))
                writer.add({
                    "path": rec.path, "identity": rel.parts[0] if len(rel.parts) > 1 else "",
                    "face_index": rec.face_index, "box": rec.face.box.tolist(),
                    "landmarks": rec.face.landmarks.ravel().tolist(), "det_score": rec.face.score,
                    "detector": rec.face.detector, "model": pipeline.embedder.name,
                    "embedding": rec.embedding.tolist(),
                    **({} if rec.quality is None else {"quality": rec.quality})})
                n_faces += 1
            else:
                writer.add_skip(rec.to_dict())
                n_skips += 1
    return {"output": str(output), "files": len(files), "already_done": len(files) - len(todo),
            "new_files": len(todo), "faces_written": n_faces, "skipped": n_skips, "skip_log": str(writer.skips_path)}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
