"""`faceforge collect`: frames → faces (detected, aligned, embedded, measured, tracked) →
identity folders, resumable.

Output folder:
  crops/<frame>_<k>.jpg      every aligned face seen (the k-th face of that frame)
  faces.jsonl                one record per face, appended as frames are processed
  manifest.json              settings, progress (last frame done, tracker state), and at the
                             end the identities found
  identities/<name>/         each identity's crops (`faceforge gallery enrol identities/` takes it as is)
  faces.parquet              every face: identity, frame, time, track, box, landmarks, yaw, pitch,
                             blur, detector score, embedding
  sheets/<name>.html         a contact sheet per identity

Resume: the manifest is rewritten (atomically) every `checkpoint_every` processed frames
with the last frame done and the tracker's state, after faces.jsonl has been flushed to
disk. A rerun drops the records of frames after that checkpoint, restores the tracker,
replays the kept faces into the collector and continues with the next frame; crops are
named by frame and index, so a frame done twice overwrites its crops instead of adding
copies. The identity folders are rebuilt from the records at the end of every run.
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import time
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

import cv2
import numpy as np

from faceforge.collect.measures import blur_score, head_pose
from faceforge.collect.modes import ManyCollector, OneCollector, cluster_everyone
from faceforge.collect.tracker import Tracker
from faceforge.core.errors import FaceForgeError, NoFaceError, OutputExistsError
from faceforge.core.files import atomic_write_json, atomic_write_text
from faceforge.core.progress import progress
from faceforge.io.video import frame_sources_kind, open_frames
from faceforge.pipeline import FacePipeline

MODES = ("one", "many", "all")
YUNET_CONFIDENT = 0.6  # YuNet's own default threshold: a face sure enough to start a track
YUNET_WEAK = 0.3       # what collect runs YuNet at, for the tracker's second stage
MAX_YAW = 50.0  # beyond this five points (and recognisers) say little: such faces are not collected


@dataclass
class CollectSettings:
    mode: str
    people: int | None = None          # many: how many people to collect
    reference: str | None = None       # one: a photo of the person (default: the first face seen)
    every: int = 1                     # process every n-th frame
    roi: tuple[int, int, int, int] | None = None  # x, y, width, height of the region to look in
    min_blur: float = 50.0             # sharpness gate (variance of the Laplacian)
    soft_blur: float | None = None     # one (graph): faces past this but under min_blur join only
                                       # by a direct edge (graph leaves); None: dropped
    method: str = "graph"              # one: graph | dbscan
    eps: float | None = None           # many: DBSCAN eps (default: from the k-distance elbow)
    merge: bool = True                 # many: merge clusters whose templates pass the threshold
    threshold: float | None = None     # same-person cosine (default: the model card's)
    max_frames: int | None = None      # stop after this many processed frames
    checkpoint_every: int = 50         # processed frames between checkpoints
    name_from: str | None = None       # many / all: name each identity after its gallery match

    def check(self) -> None:
        if self.mode not in MODES:
            raise FaceForgeError(f"unknown mode {self.mode!r}; one of {', '.join(MODES)}")
        if self.soft_blur is not None and (self.mode != "one" or self.method != "graph"
                                           or not 0 <= self.soft_blur < self.min_blur):
            raise FaceForgeError(f"--soft-blur is for mode one with the graph method, between 0 and --min-blur "
                                 f"({self.min_blur}); got {self.soft_blur}")
        if self.mode == "many" and not self.people:
            raise FaceForgeError("mode many needs --people N")
        if self.roi is not None and (len(self.roi) != 4 or min(self.roi[2:]) <= 0 or min(self.roi[:2]) < 0):
            raise FaceForgeError(f"--roi is x,y,width,height with a positive size, got {self.roi}")


SETTING_DEFAULTS = {f.name: f.default for f in fields(CollectSettings) if f.default is not MISSING}


def safe_name(name: str, fallback: str = "person") -> str:
    """A folder name from a person's name: letters, digits, '.', '_' and '-' kept, the rest '_'
    (never a path: no separators, no '..')."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name).strip("._")
    return cleaned[:80] or fallback


def unique_names(names: list[str]) -> list[str]:
    """The names made distinct as folder names, case-insensitively (macOS and Windows do not
    tell "Ann" from "ann"): a repeat gets _2, _3, ..."""
    used: set[str] = set()
    out = []
    for name in names:
        candidate, k = name, 1
        while candidate.lower() in used:
            k += 1
            candidate = f"{name}_{k}"
        used.add(candidate.lower())
        out.append(candidate)
    return out


class _Run:
    def __init__(self, source: str, out: Path, pipeline: FacePipeline, settings: CollectSettings) -> None:
        self.source, self.out, self.pipe, self.s = source, out, pipeline, settings
        self.records: list[dict] = []
        self.threshold = settings.threshold if settings.threshold is not None else pipeline.embedder.threshold
        if self.threshold is None:
            raise FaceForgeError(f"{pipeline.embedder.name} has no known threshold: give --threshold")
        # a track continues only with a face that passes the model's same-person threshold, and
        # re-finds a lost person by appearance alone halfway between that and a perfect match
        # YuNet's scores are probabilities: run at 0.3 (`faceforge collect` does), faces from 0.6
        # start tracks and weaker ones may only continue one (and only those are kept); other
        # detectors' own threshold is the one bar. The buffer counts video frames: 30 processed.
        det = pipeline.detector
        high = max(YUNET_CONFIDENT, det.score_threshold) if det.name == "yunet" else det.score_threshold
        self.tracker = Tracker(high=high, low=det.score_threshold, min_cosine=self.threshold,
                               reid_cosine=(1 + self.threshold) / 2, buffer=30 * settings.every)
        self.collector = None
        self.reference_name = "ID_0"

    # ---- state on disk ------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.out / "manifest.json"

    def _identity(self) -> dict:
        return {"source": self.source, "settings": {k: v for k, v in asdict(self.s).items()
                                                    if k not in ("max_frames", "checkpoint_every", "name_from")},
                "model": self.pipe.embedder.name, "detector": self.pipe.detector.name}

    def open(self) -> int:
        """Create the folder or resume it; the last frame done (−1: none)."""
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "crops").mkdir(exist_ok=True)
        last = -1
        if self.manifest_path.exists():
            m = json.loads(self.manifest_path.read_text())
            current = json.loads(json.dumps(self._identity()))  # tuples come back as lists
            # a setting added after the folder was written was, for that folder, its default
            m["identity"]["settings"] = {**{k: v for k, v in SETTING_DEFAULTS.items() if k in current["settings"]},
                                         **m["identity"]["settings"]}
            if m["identity"] != current:
                raise OutputExistsError("holds a collection with other settings (source, mode, model): "
                                        "use another output folder", self.out)
            if frame_sources_kind(self.source) in ("camera", "stream"):
                raise OutputExistsError("holds a collection from a live source, which cannot be resumed (its "
                                        "frames are gone): use another output folder", self.out)
            last = int(m["frames_done"])
            self.tracker.restore(m["tracker"])
            self.reference_name = m.get("reference_name", self.reference_name)
            if m.get("reference_embedding") is not None:
                self._make_collector(np.array(m["reference_embedding"], np.float32))
        elif not {p.name for p in self.out.iterdir()} <= {"crops", "faces.jsonl"}:  # killed before a checkpoint
            raise OutputExistsError("is not empty and holds no collection to resume", self.out)
        log = self.out / "faces.jsonl"
        if log.exists():
            kept = []
            for line in log.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by the kill: after the checkpoint
                    continue
                if rec["frame"] <= last:
                    kept.append(rec)
            atomic_write_text(log, "".join(json.dumps(r) + "\n" for r in kept))
            self.records = kept
        if self.s.mode == "one" and self.collector is None and self.s.reference:
            self._reference_from_photo(Path(self.s.reference))
        if self.s.mode == "many":
            self.collector = ManyCollector(int(self.s.people), eps=self.s.eps,
                                           merge_threshold=self.threshold if self.s.merge else None)
        for rec in self.records:
            self._feed(rec)
        return last

    def checkpoint(self, frame: int, status: str = "running") -> None:
        with open(self.out / "faces.jsonl", "a") as fh:
            fh.flush()
            os.fsync(fh.fileno())
        ref = getattr(self.collector, "reference", None)
        atomic_write_json(self.manifest_path, {
            "identity": self._identity(), "frames_done": frame, "faces": len(self.records), "status": status,
            "tracker": self.tracker.state(), "reference_name": self.reference_name,
            "reference_embedding": None if ref is None else np.asarray(ref).tolist()})

    # ---- the collector --------------------------------------------------------------------
    def _make_collector(self, reference: np.ndarray) -> None:
        self.collector = OneCollector(reference, self.threshold, method=self.s.method, max_yaw=MAX_YAW)

    def _reference_from_photo(self, photo: Path) -> None:
        try:
            _, emb = self.pipe.embed_file(photo, select="largest")
        except NoFaceError:
            raise FaceForgeError("the reference photo shows no usable face", photo) from None
        self.reference_name = safe_name(photo.stem)
        self._make_collector(emb[0])

    def _feed(self, rec: dict) -> None:
        if self.s.mode == "one" and self.collector is None:  # no photo: the first usable face is the person
            if not (rec["sharp"] and abs(rec["yaw"]) < MAX_YAW):
                return
            self._make_collector(np.array(rec["embedding"], np.float32))
        if self.collector is not None:
            face = (np.array(rec["embedding"], np.float32), rec["yaw"], rec["pitch"], rec["sharp"], rec["track"])
            if self.s.mode == "one":  # only mode one has soft faces (graph leaves)
                self.collector.add(*face, soft=self.s.soft_blur is not None and rec["blur"] > self.s.soft_blur)
            else:
                self.collector.add(*face)

    @property
    def done(self) -> bool:
        return self.collector is not None and self.collector.done

    # ---- one frame ------------------------------------------------------------------------
    def process(self, index: int, t: float, frame: np.ndarray, log) -> int:
        x0 = y0 = 0
        view = frame
        if self.s.roi is not None:
            x0, y0, w, h = self.s.roi
            view = frame[y0:y0 + h, x0:x0 + w]
            if view.size == 0:
                raise FaceForgeError(f"--roi {self.s.roi} lies outside the {frame.shape[1]}×{frame.shape[0]} frame")
        faces = self.pipe.detect(np.ascontiguousarray(view))
        if not faces:
            self.tracker.update(index, np.zeros((0, 4)), np.zeros(0), np.zeros((0, 1)))
            return 0
        for f in faces:  # back to frame coordinates
            f.box = f.box + np.array([x0, y0, x0, y0], np.float32)
            f.landmarks = f.landmarks + np.array([x0, y0], np.float32)
        crops = np.stack([self.pipe.embedder.align(frame, f) for f in faces])
        emb = self.pipe.embedder.embed_crops(crops)
        tracks = self.tracker.update(index, np.stack([f.box for f in faces]), np.array([f.score for f in faces]), emb)
        kept = 0
        for f, crop, e, track in zip(faces, crops, emb, tracks):
            if track < 0:  # a weak detection no track took: not a face to keep
                continue
            try:
                yaw, pitch = head_pose(f.landmarks)
            except FaceForgeError:  # degenerate landmarks: this face only
                continue
            key = f"{index:07d}_{kept}"
            kept += 1
            cv2.imwrite(str(self.out / "crops" / f"{key}.jpg"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
            blur = blur_score(crop)
            rec = {"key": key, "frame": index, "time": round(t, 3), "box": [round(float(v), 1) for v in f.box],
                   "landmarks": np.round(f.landmarks, 1).ravel().tolist(), "det_score": round(float(f.score), 4),
                   "yaw": round(yaw, 2), "pitch": round(pitch, 2), "blur": round(blur, 1),
                   "sharp": blur > self.s.min_blur, "track": int(track), "embedding": e.round(6).tolist()}
            log.write(json.dumps(rec) + "\n")
            self.records.append(rec)
            self._feed(rec)
        return kept

    # ---- the result ----------------------------------------------------------------------
    def labels(self) -> tuple[np.ndarray, list[str]]:
        if not self.records:
            return np.zeros(0, np.int64), []
        if self.s.mode == "all":
            usable = np.array([r["sharp"] and abs(r["yaw"]) < MAX_YAW for r in self.records])
            labels = np.full(len(self.records), -1, np.int64)
            if usable.any():
                labels[usable] = cluster_everyone(np.array([r["embedding"] for r in self.records])[usable],
                                                  np.array([r["track"] for r in self.records])[usable], self.threshold)
            return labels, [f"ID_{k}" for k in range(int(labels.max()) + 1)]
        self.collector.update()
        labels = self.collector.labels
        if self.s.mode == "one":
            return labels, [self.reference_name]
        return labels, [f"ID_{k}" for k in range(int(labels.max()) + 1)] if len(labels) and labels.max() >= 0 else []

    def _gallery_names(self, labels: np.ndarray, names: list[str]) -> list[str]:
        """Each identity named after the gallery identity its mean embedding matches at the
        threshold (sanitised; kept as ID_k below it, or when two would share a name)."""
        from faceforge.search.gallery import open_gallery
        emb = np.array([r["embedding"] for r in self.records], np.float32)
        means = np.stack([emb[labels == k].mean(axis=0) for k in range(len(names))])
        with open_gallery(self.s.name_from) as g:
            hits = g.search(means, 1, model=self.pipe.embedder.name)
        wanted = [safe_name(h[0].identity) if h and h[0].score >= self.threshold else name
                  for name, h in zip(names, hits)]
        return unique_names(wanted)

    def finish(self, frame: int) -> dict:
        labels, names = self.labels()
        if self.s.name_from and names and self.s.mode != "one":
            names = self._gallery_names(labels, names)
        ids = self.out / "identities"
        if ids.exists():
            shutil.rmtree(ids)
        sheets = self.out / "sheets"
        if sheets.exists():
            shutil.rmtree(sheets)
        sheets.mkdir()
        summary = {}
        for k, name in enumerate(names):
            rows = [r for r, lab in zip(self.records, labels) if lab == k]
            if not rows:
                continue
            folder = ids / name
            folder.mkdir(parents=True)
            for r in rows:
                shutil.copyfile(self.out / "crops" / f"{r['key']}.jpg", folder / f"{r['key']}.jpg")
            yaws = np.array([r["yaw"] for r in rows])
            summary[name] = {"faces": len(rows), "tracklets": len({r["track"] for r in rows}),
                             "frontal": int(np.sum(np.abs(yaws) <= 15)), "left": int(np.sum((yaws > 15) & (yaws <= 35))),
                             "right": int(np.sum((yaws >= -35) & (yaws < -15))),
                             "valid": bool(self.s.mode != "many" or k in self.collector.valid)}
            _contact_sheet(sheets / f"{name}.html", name, rows)
        self._write_parquet(labels, names)
        self.checkpoint(frame, "done")
        m = json.loads(self.manifest_path.read_text())
        m.update(identities=summary, eps=getattr(self.collector, "eps", None))
        atomic_write_json(self.manifest_path, m)
        return m

    def _write_parquet(self, labels: np.ndarray, names: list[str]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq
        cols: dict[str, list] = {"identity": [names[lab] if lab >= 0 else "" for lab in labels],
                                 "path": [str(self.out / "crops" / f"{r['key']}.jpg") for r in self.records]}
        for key in ("frame", "time", "track", "box", "landmarks", "det_score", "yaw", "pitch", "blur", "embedding"):
            cols[key] = [r[key] for r in self.records]
        cols["model"] = [self.pipe.embedder.name] * len(self.records)
        pq.write_table(pa.table(cols), self.out / "faces.parquet")


def _contact_sheet(path: Path, name: str, rows: list[dict]) -> None:
    imgs = "".join(f'<figure><img src="../identities/{html.escape(name)}/{r["key"]}.jpg" alt="{r["key"]}">'
                   f'<figcaption>f{r["frame"]} t{r["track"]} yaw {r["yaw"]:.0f}° blur {r["blur"]:.0f}</figcaption>'
                   "</figure>" for r in rows)
    atomic_write_text(path, f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(name)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:20px}}.grid{{display:flex;flex-wrap:wrap;gap:6px}}
figure{{margin:0;width:112px;font-size:10px;color:#555}}img{{width:112px;height:112px;display:block}}</style>
</head><body><h1>{html.escape(name)}</h1><p>{len(rows)} faces, {len({r["track"] for r in rows})} tracklets</p>
<div class="grid">{imgs}</div></body></html>
""")


def collect(source: str | Path, out_dir: str | Path, pipeline: FacePipeline, settings: CollectSettings,
            show_progress: bool | None = None) -> dict:
    """Collect identities from `source` (video file, camera index, stream URL or a folder of
    frames) into `out_dir`; resumes a run that was stopped. Returns the manifest."""
    settings.check()
    source = str(source)
    if frame_sources_kind(source) == "file" and not Path(source).is_file():
        raise FaceForgeError("video file not found", source)
    run = _Run(source, Path(out_dir), pipeline, settings)
    last = run.open()
    frame = last
    processed = 0
    t0, faces = time.perf_counter(), 0
    rate = lambda: f"{faces / max(time.perf_counter() - t0, 1e-9):.1f} faces/s"  # noqa: E731
    with open(run.out / "faces.jsonl", "a") as log:
        for index, t, image in progress(open_frames(source, settings.every), "collecting", enabled=show_progress,
                                        status=rate):
            if index <= last:
                continue
            if run.done or (settings.max_frames is not None and processed >= settings.max_frames):
                break
            faces += run.process(index, t, image, log)
            frame, processed = index, processed + 1
            if processed % settings.checkpoint_every == 0:
                log.flush()
                run.checkpoint(frame)
    result = run.finish(frame)
    result["run"] = {"frames_processed": processed, "faces": faces,
                     "seconds": round(time.perf_counter() - t0, 2),
                     "faces_per_s": round(faces / max(time.perf_counter() - t0, 1e-9), 2)}
    return result
