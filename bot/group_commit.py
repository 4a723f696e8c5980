"""Group commit: small write jobs arriving together share one transaction (SQLite has one writer at a time)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")
Job = Callable[[AsyncSession], Awaitable[Any]]
log = logging.getLogger(__name__)


class GroupCommit:
    """Runs submitted jobs in shared write transactions: while one transaction runs, new jobs queue, and the
    next transaction takes all of them (up to max_batch). Each submit() returns its job's result once the
    transaction holding it has committed — so "stored before the platform is answered" still holds.

    Jobs must be small and must not fail in normal operation (an error fails the whole batch: every job in it
    raises, nothing of it is committed, and the callers answer so that the platform retries)."""

    def __init__(self, db: Any, max_batch: int = 200) -> None:
        self.db = db
        self.max_batch = max_batch
        self._queue: list[tuple[Job, asyncio.Future[Any], Callable[[Any], None] | None]] = []
        self._runner: asyncio.Task[None] | None = None
        self.transactions = 0  # for tests and /healthz-style diagnostics

    async def submit(self, job: Callable[[AsyncSession], Awaitable[T]],
                     on_commit: Callable[[T], None] | None = None) -> T:
        """Queue a job and wait for the commit of the transaction that ran it; its result, or its batch's error.

        on_commit(result) runs right after the commit even if the caller has been cancelled meanwhile (what
        was committed must still be acted on, e.g. a stored event handled)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((job, future, on_commit))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._drain(), name="jxcbot-group-commit")
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch:]
            live = [item for item in batch if not item[1].cancelled()]
            if not live:
                continue

            async def work(session: AsyncSession, live: list = live) -> list[Any]:
                return [await job(session) for job, _, _ in live]

            try:
                results = await self.db.write(work)
            except Exception as exc:  # the whole batch failed: every caller learns it
                for _, fut, _ in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.transactions += 1
            for (_, fut, on_commit), result in zip(live, results, strict=True):
                if on_commit is not None:
                    try:
                        on_commit(result)
                    except Exception:  # committed all the same: the caller still gets its result
                        log.exception("group commit: an on_commit callback failed")
                if not fut.done():
                    fut.set_result(result)

    async def close(self) -> None:
        """Wait for queued jobs to be committed."""
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)
