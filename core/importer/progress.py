"""Progress reporting while validating rows: a callback of (done, total) every PROGRESS_EVERY rows."""

from __future__ import annotations

from collections.abc import Callable

PROGRESS_EVERY = 500
Progress = Callable[[int, int], None] | None


def _tick(progress: Progress, done: int, total: int) -> None:
    if progress is not None and (done % PROGRESS_EVERY == 0 or done == total):
        progress(done, total)
