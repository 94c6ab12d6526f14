"""A bounded pool of model workers that batches concurrent requests.

Request threads decode their uploads themselves (Pillow and OpenCV release the GIL) and
hand the decoded images to the pool. Each worker owns one pipeline (detectors are not safe
to share between threads), takes every job waiting up to `max_batch`, detects each image,
embeds the crops of all of them in one call, and searches the gallery once for all the
faces to identify. The queue is bounded: when it is full a request is refused at once
(the service answers 503) instead of piling up.
"""
from __future__ import annotations

import os
import queue
import sys
import threading
from collections import defaultdict
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from faceforge.pipeline import FacePipeline, Select
from faceforge.search.decision import Decision, identify
from faceforge.vision.face import Face


class PoolBusy(Exception):
    """The queue is full (more requests are waiting than the pool accepts), or it is closed."""


@dataclass
class Job:
    """Faces of one image, and with `identify` their gallery decisions."""
    image: np.ndarray
    select: Select
    identify: bool = False
    k: int = 1
    min_quality: float | None = None
    future: Future = field(default_factory=Future)


@dataclass
class JobResult:
    faces: list[Face]
    embeddings: np.ndarray
    decisions: list[Decision] | None = None


def share_cores(workers: int) -> None:
    """Give each worker its share of the cores: OpenCV's and torch's own thread pools would
    otherwise each try to use every core at once and slow one another down."""
    per = max(1, (os.cpu_count() or 1) // max(1, workers))
    import cv2
    cv2.setNumThreads(per)
    torch = sys.modules.get("torch")  # only if an embedder already uses it
    if torch is not None:
        torch.set_num_threads(per)


class ModelPool:
    """len(pipelines) worker threads over one job queue; see the module doc.

    `search` runs gallery searches (under the caller's lock): it takes the query matrix, k,
    min_quality and returns one decision per row."""

    def __init__(self, pipelines: Sequence[FacePipeline], search: Callable[..., list[Decision]],
                 max_batch: int = 8, max_queue: int = 64) -> None:
        if not pipelines:
            raise ValueError("a model pool needs at least one pipeline")
        self.max_batch = max(1, int(max_batch))
        self._queue: queue.Queue[Job] = queue.Queue(maxsize=max(1, int(max_queue)))
        self._search = search
        self._closed = threading.Event()
        self.largest_batch = 0  # the most jobs one worker has served in one pass
        if len(pipelines) > 1:
            share_cores(len(pipelines))
        self._threads = [threading.Thread(target=self._work, args=(p,), name=f"faceforge-model-{i}", daemon=True)
                         for i, p in enumerate(pipelines)]
        for t in self._threads:
            t.start()

    def submit(self, job: Job) -> Future:
        if self._closed.is_set():
            raise PoolBusy("the service is shutting down")
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise PoolBusy(f"{self._queue.maxsize} requests already waiting") from None
        return job.future

    def close(self) -> None:
        """Stop taking jobs, let the workers finish the batches they hold, and answer every
        job still waiting with PoolBusy (none is left unanswered)."""
        self._closed.set()
        for t in self._threads:
            t.join(timeout=30)
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            job.future.set_exception(PoolBusy("the service is shutting down"))

    def _take(self) -> list[Job] | None:
        while not self._closed.is_set():
            try:
                jobs = [self._queue.get(timeout=0.2)]
            except queue.Empty:
                continue
            while len(jobs) < self.max_batch:
                try:
                    jobs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            return jobs
        return None

    def _work(self, pipeline: FacePipeline) -> None:
        while (jobs := self._take()) is not None:
            self.largest_batch = max(self.largest_batch, len(jobs))
            try:
                self._serve(pipeline, jobs)
            except Exception:  # one bad job must not fail the others: serve them one by one
                for j in jobs:
                    if j.future.done():
                        continue
                    try:
                        self._serve(pipeline, [j])
                    except Exception as exc:
                        j.future.set_exception(exc)

    def _serve(self, pipeline: FacePipeline, jobs: list[Job]) -> None:
        by_select: dict[str, list[int]] = defaultdict(list)
        for i, j in enumerate(jobs):
            by_select[j.select].append(i)
        results: list[JobResult | None] = [None] * len(jobs)
        for select, idx in by_select.items():
            for i, res in zip(idx, pipeline.embed_images([jobs[i].image for i in idx], select)):
                results[i] = None if res is None else JobResult(*res)
        groups: dict[tuple, list[int]] = defaultdict(list)  # one gallery search per (k, min_quality)
        for i, j in enumerate(jobs):
            if j.identify and results[i] is not None:
                groups[(j.k, j.min_quality)].append(i)
        for (k, min_quality), idx in groups.items():
            decisions = self._search(np.concatenate([results[i].embeddings for i in idx]), k, min_quality)
            start = 0
            for i in idx:
                n = len(results[i].faces)
                results[i].decisions = decisions[start:start + n]
                start += n
        for j, r in zip(jobs, results):
            j.future.set_result(r)


def gallery_search(gallery, lock: threading.Lock, threshold: float, model: str) -> Callable[..., list[Decision]]:
    """The pool's search function over one gallery (its client is used under `lock`)."""
    def search(vectors: np.ndarray, k: int, min_quality: float | None) -> list[Decision]:
        with lock:
            return identify(gallery, vectors, k, threshold, min_quality, model)
    return search
