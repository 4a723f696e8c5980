"""Tracked background tasks: every handler run is kept, logged when it fails, and awaited on shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class TaskTracker:
    """Spawns background tasks, keeps a reference until they finish, and waits for them on close."""

    def __init__(self, grace: float = 30.0) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self.grace = grace  # seconds running tasks get to finish on close

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        """Start coro as a tracked task; refused once closing began (the coroutine is closed unrun)."""
        if self._closing:
            coro.close()
            raise RuntimeError("shutting down: no new background tasks")
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def close(self) -> None:
        """Refuse new tasks, let running ones finish (cancel what is left after `grace` seconds)."""
        self._closing = True
        if not self._tasks:
            return
        _finished, pending = await asyncio.wait(set(self._tasks), timeout=self.grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
