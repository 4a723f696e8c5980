"""SQLite's one writer as a thread with its own event loop, where write transactions run without thread hops."""

from __future__ import annotations

import asyncio
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
        self.engine: AsyncEngine = self.call_soon(make_engine)
        self.lock: asyncio.Lock = self.call_soon(asyncio.Lock)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call_soon(self, fn: Any) -> Any:
        """Run a plain function in the writer thread and return its result (blocks the caller briefly)."""

        async def call() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the writer loop and await its result from the caller's loop.

        Cancelling the caller cancels the coroutine there (its transaction rolls back)."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """Hold the writer lock from another loop (for a write session that runs outside this thread)."""
        await self.run(self.lock.acquire())
        try:
            yield
        finally:
            self.loop.call_soon_threadsafe(self.lock.release)

    async def close(self) -> None:
        """Dispose of the engine in its thread, then stop the loop and the thread."""
        if not self._thread.is_alive():
            return
        await self.run(self.engine.dispose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        await asyncio.to_thread(self._thread.join)
        self.loop.close()
