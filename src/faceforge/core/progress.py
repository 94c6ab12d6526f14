"""One progress helper for every long loop (rich bars on a terminal, silent otherwise)."""
from __future__ import annotations

import sys
from typing import Callable, Iterable, Iterator, TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


def progress(items: Iterable[T], description: str, total: int | None = None,
             enabled: bool | None = None, status: Callable[[], str] | None = None) -> Iterator[T]:
    """Yield from `items` while drawing a bar on stderr when it is a terminal; `status()`
    (e.g. a rate) is shown after the description and refreshed after each item."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)
            if status is not None:
                bar.update(task, description=f"{description} {status()}")
