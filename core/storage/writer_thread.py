"""SQLite's one writer as a thread with its own event loop, where write transactions run without thread hops."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")


class WriterThread:
    """A daemon thread running an event loop that owns the SQLite write engine and the writer lock.

    A write transaction submitted here runs start to finish in this thread: each statement is a plain
    sqlite3 call (the inline driver), not a round trip to a worker thread and back through the caller's
    event loop. The caller's loop only waits for the one result. Blocking is confined to this thread,
    which does nothing but database writes, one transaction at a time (`lock`)."""

    def __init__(self, make_engine: Any, name: str = "jxcbot-sqlite-writer") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        # Neither connects nor binds to a loop when created (connections open, and the lock binds, on first
        # use — in this thread), so the caller's loop never waits for the thread here.
        self.engine: AsyncEngine = make_engine()
        self.lock = asyncio.Lock()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the writer loop and await its result from the caller's loop.

        Cancelling the caller cancels the coroutine there (its transaction rolls back)."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """Hold the writer lock from another loop (for a write session that runs outside this thread).

        A holder task on this loop takes the lock and keeps it until `release` is set; the caller sets it
        when done *or* cancelled, so a lock granted just as the caller gave up is still released."""
        release = asyncio.Event()  # binds to the writer loop on first wait
        granted: concurrent.futures.Future[None] = concurrent.futures.Future()
        asyncio.run_coroutine_threadsafe(self._hold(granted, release), self.loop)
        try:
            await asyncio.wrap_future(granted)
            yield
        finally:
            if not self.loop.is_closed():
                self.loop.call_soon_threadsafe(release.set)

    async def _hold(self, granted: concurrent.futures.Future[None], release: asyncio.Event) -> None:
        async with self.lock:
            try:
                granted.set_result(None)
            except concurrent.futures.InvalidStateError:  # the caller was cancelled meanwhile
                pass
            await release.wait()

    async def _shutdown(self) -> None:
        async with self.lock:  # transactions queued or running finish first
            await self.engine.dispose()

    async def close(self) -> None:
        """Dispose of the engine in its thread, then stop the loop and the thread."""
        if not self._thread.is_alive():
            return
        await self.run(self._shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        await asyncio.to_thread(self._thread.join)
        self.loop.close()
