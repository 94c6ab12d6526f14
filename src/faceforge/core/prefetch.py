"""Compute the next items of a stream while the caller works on the current one."""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def prefetched(fn: Callable[[T], R], items: Iterable[T], workers: int = 1, depth: int = 8) -> Iterator[R]:
    """fn(item) for every item, in the items' order, computed by `workers` threads up to
    `depth` items ahead of the consumer. Worth it where fn spends its time outside the GIL
    (image decoding, OpenCV, PyTorch). workers=0 computes each item when it is asked for.
    An exception inside fn is raised when its item's turn comes; when the consumer stops
    early, what is queued is cancelled and what is running is waited for."""
    if workers <= 0:
        yield from map(fn, items)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="faceforge-prefetch")
    window: deque[Future[R]] = deque()
    try:
        for item in items:
            window.append(pool.submit(fn, item))
            if len(window) >= max(depth, 1):
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
