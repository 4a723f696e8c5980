"""SQLite `Database.write` transactions run whole in the writer thread (core/writer_thread.py).

The caller's loop only awaits the result: work runs in another thread, results and errors come back
unchanged, the caller's loop keeps running meanwhile, cancelling the caller cancels (rolls back) the
transaction, `session()` and `write()` never meet SQLite's lock, and `dispose()` stops the thread."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from sqlalchemy import event, func, select, text

from core.errors import DomainError
from core.models import Supplier

WRITER_THREAD_NAME = "jxcbot-sqlite-writer"


def _sqlite_only(db, why: str) -> None:
    if not db.is_sqlite:
        pytest.skip(f"SQLite writer thread ({why}); this run is on PostgreSQL")


async def _supplier_codes(db) -> list[str]:
    async with db.read() as s:
        return list((await s.execute(select(Supplier.code).order_by(Supplier.code))).scalars())


def _no_busy_wait(engine) -> None:
    """New connections of `engine` fail at once with 'database is locked' instead of waiting."""

    @event.listens_for(engine.sync_engine, "connect")
    def _busy_timeout_zero(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=0")
        cursor.close()


async def test_write_runs_in_the_writer_thread_and_returns_its_result(db):
    """The work runs on another thread's loop with the inline driver; its return value comes back as is."""
    _sqlite_only(db, "where work runs")
    caller_thread = threading.get_ident()
    caller_loop = asyncio.get_running_loop()
    seen: dict[str, object] = {}
    result = object()

    async def work(s):
        seen["thread"] = threading.current_thread()
        seen["loop"] = asyncio.get_running_loop()
        seen["driver"] = (await s.connection()).dialect.driver
        s.add(Supplier(code="S1", name="one"))
        return result

    assert await db.write(work) is result
    assert seen["thread"].ident != caller_thread
    assert seen["thread"].name == WRITER_THREAD_NAME
    assert seen["thread"].daemon
    assert seen["loop"] is not caller_loop
    assert seen["driver"] == "jxcinline"
    assert await _supplier_codes(db) == ["S1"]  # committed

    async def second(s):
        return threading.current_thread()

    assert await db.write(second) is seen["thread"]  # one writer thread for every write


async def test_domain_error_propagates_unchanged_and_rolls_back(db):
    """A DomainError raised by the work reaches the caller as the same object; nothing was written."""
    error = DomainError("E_TEST", "测试错误", "无需处理", {"code": "S1"})
    flushed: list[int] = []

    async def work(s):
        s.add(Supplier(code="S1", name="one"))
        await s.flush()
        flushed.append((await s.execute(select(func.count()).select_from(Supplier))).scalar_one())
        raise error

    with pytest.raises(DomainError) as info:
        await db.write(work)
    assert info.value is error
    assert info.value.code == "E_TEST" and info.value.fields == {"code": "S1"}
    assert flushed == [1]  # the row really reached the database inside the transaction…
    assert await _supplier_codes(db) == []  # …and was rolled back

    async def ok(s):
        s.add(Supplier(code="S2", name="two"))
        return "done"

    assert await db.write(ok) == "done"  # the lock was released by the failed transaction
    assert await _supplier_codes(db) == ["S2"]


async def test_callers_loop_keeps_running_while_a_write_blocks(db):
    """Blocking SQL inside a write (here time.sleep) stalls the writer thread, not the caller's loop."""
    _sqlite_only(db, "on PostgreSQL work runs on the caller's loop")
    in_sleep = threading.Event()
    ticks_during_write = 0
    stop = False

    async def ticker() -> None:
        nonlocal ticks_during_write
        while not stop:
            await asyncio.sleep(0.01)
            if in_sleep.is_set():
                ticks_during_write += 1

    async def work(s):
        s.add(Supplier(code="S1", name="one"))
        await s.flush()
        in_sleep.set()
        try:
            time.sleep(0.2)  # noqa: ASYNC251 - stands for heavy SQL holding the thread
        finally:
            in_sleep.clear()
        return "written"

    ticking = asyncio.create_task(ticker())
    try:
        assert await db.write(work) == "written"
    finally:
        stop = True
        await ticking
    # ~20 expected; 0 if the caller's loop had been blocked for the whole sleep.
    assert ticks_during_write >= 5, ticks_during_write
    assert await _supplier_codes(db) == ["S1"]


async def test_cancelling_the_caller_cancels_the_transaction(db):
    """Cancel the awaiting task: the work is cancelled where it runs, its insert rolls back, the lock is free."""
    caller_loop = asyncio.get_running_loop()
    inserted = asyncio.Event()
    cancelled_in_work = threading.Event()
    work_thread: list[int] = []

    async def work(s):
        work_thread.append(threading.get_ident())
        s.add(Supplier(code="S1", name="one"))
        await s.flush()
        caller_loop.call_soon_threadsafe(inserted.set)
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled_in_work.set()
            raise
        return "not cancelled"

    task = asyncio.create_task(db.write(work))
    await asyncio.wait_for(inserted.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(cancelled_in_work.wait, 2), "the work never saw the cancellation"
    if db.is_sqlite:
        assert work_thread != [threading.get_ident()]

    async def count(s):
        return (await s.execute(select(func.count()).select_from(Supplier))).scalar_one()

    # Queued behind the cancelled transaction: it would wait the full 10 s if that were still running.
    assert await asyncio.wait_for(db.write(count), 2) == 0
    assert await _supplier_codes(db) == []

    async def insert(s):
        s.add(Supplier(code="S2", name="two"))

    await asyncio.wait_for(db.write(insert), 2)
    assert await _supplier_codes(db) == ["S2"]


async def test_session_and_write_queue_behind_each_other(db):
    """With busy_timeout 0 (no SQLite busy wait) a session and a write still never meet 'database is locked'.

    write(attempts=1) has no retry, so if the write reached BEGIN IMMEDIATE while the session held SQLite's
    write lock it would fail at once instead of waiting for the session."""
    _sqlite_only(db, "in-process writer lock")
    await db.engine.dispose()  # new connections get the listener below
    _no_busy_wait(db.engine)
    _no_busy_wait(db.write_engine)  # starts the writer thread; its engine has no connection yet

    def insert(code: str):
        async def work(s):
            assert (await s.execute(text("PRAGMA busy_timeout"))).scalar() == 0
            s.add(Supplier(code=code, name=code))
            return code

        return work

    # A session holds the lock: a concurrent write waits until it commits.
    async with db.session() as s:
        assert (await s.execute(text("PRAGMA busy_timeout"))).scalar() == 0
        s.add(Supplier(code="S1", name="session"))
        await s.flush()  # SQLite's write lock is held from here
        writing = asyncio.create_task(db.write(insert("S2"), attempts=1))
        await asyncio.sleep(0.1)
        assert not writing.done(), writing
    assert await asyncio.wait_for(writing, 2) == "S2"
    assert await _supplier_codes(db) == ["S1", "S2"]

    # A write holds the lock: a concurrent session waits until it commits.
    caller_loop = asyncio.get_running_loop()
    write_started = asyncio.Event()
    release_write: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def slow(s):
        s.add(Supplier(code="S3", name="write"))
        await s.flush()
        release = asyncio.Event()
        release_write.append((asyncio.get_running_loop(), release))
        caller_loop.call_soon_threadsafe(write_started.set)
        await release.wait()
        return "S3"

    writing = asyncio.create_task(db.write(slow, attempts=1))
    await asyncio.wait_for(write_started.wait(), 2)
    in_session = asyncio.Event()

    async def session_insert() -> None:
        async with db.session() as s:
            in_session.set()
            s.add(Supplier(code="S4", name="session"))
            await s.flush()

    opening = asyncio.create_task(session_insert())
    await asyncio.sleep(0.1)
    assert not in_session.is_set() and not opening.done(), opening
    work_loop, release = release_write[0]
    work_loop.call_soon_threadsafe(release.set)
    assert await asyncio.wait_for(writing, 2) == "S3"
    await asyncio.wait_for(opening, 2)
    assert await _supplier_codes(db) == ["S1", "S2", "S3", "S4"]

    # Many of both at once: read-modify-write counters lose no update and nothing fails.
    async def setup(s):
        await s.execute(text("CREATE TABLE c (n INTEGER)"))
        await s.execute(text("INSERT INTO c VALUES (0)"))

    await db.write(setup, attempts=1)

    async def bump_write(s):
        n = (await s.execute(text("SELECT n FROM c"))).scalar()
        await asyncio.sleep(0.001)
        await s.execute(text("UPDATE c SET n = :n"), {"n": n + 1})

    async def bump_session() -> None:
        async with db.session() as s:
            n = (await s.execute(text("SELECT n FROM c"))).scalar()
            await asyncio.sleep(0.001)
            await s.execute(text("UPDATE c SET n = :n"), {"n": n + 1})

    await asyncio.gather(*(db.write(bump_write, attempts=1) for _ in range(20)), *(bump_session() for _ in range(20)))
    async with db.read() as s:
        assert (await s.execute(text("SELECT n FROM c"))).scalar() == 40


async def test_dispose_stops_the_writer_thread_and_a_later_write_starts_a_new_one(db):
    """dispose() ends the writer thread; the next write runs on a fresh one and sees earlier commits."""
    _sqlite_only(db, "thread lifecycle")

    def insert(code: str):
        async def work(s):
            s.add(Supplier(code=code, name=code))
            return threading.current_thread()

        return work

    first = await db.write(insert("S1"))
    assert first.name == WRITER_THREAD_NAME and first.is_alive()
    await db.dispose()
    assert not first.is_alive()

    second = await db.write(insert("S2"))
    assert second is not first and second.is_alive()
    assert second.name == WRITER_THREAD_NAME
    assert await _supplier_codes(db) == ["S1", "S2"]
    await db.dispose()
    assert not second.is_alive()
    await db.dispose()  # a second dispose with no thread is harmless


async def test_session_cancelled_while_queued_for_the_lock_does_not_keep_it(db):
    """A session entry cancelled while it waits behind another writer leaves the lock to the others."""
    _sqlite_only(db, "in-process writer lock")

    async def enter_session() -> None:
        async with db.session() as s:
            s.add(Supplier(code="NEVER", name="never"))

    async with db.session() as s:
        s.add(Supplier(code="S1", name="one"))
        await s.flush()
        queued = asyncio.create_task(enter_session())
        await asyncio.sleep(0.05)
        assert not queued.done()
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued

    async def insert(s):
        s.add(Supplier(code="S2", name="two"))

    await asyncio.wait_for(db.write(insert), 2)
    assert await _supplier_codes(db) == ["S1", "S2"]


async def test_session_cancelled_just_as_it_gets_the_lock_does_not_keep_it(db):
    """Cancel a session entry in the window between 'lock acquired in the writer thread' and 'caller told'.

    Once the writer loop has acquired the lock, the news only reaches the caller's loop through a callback
    queued there. A cancellation landing before that callback runs must still release the lock (an earlier
    held() awaited run(lock.acquire()) and leaked it here, so every later write waited forever). The test
    blocks the caller's loop until the writer loop holds the lock, which makes the window certain."""
    _sqlite_only(db, "in-process writer lock")

    async def noop(s):
        return None

    await db.write(noop)  # the writer thread exists, so entering the session only waits for the lock

    async def enter_session() -> None:
        async with db.session():
            await asyncio.sleep(10)

    entering = asyncio.create_task(enter_session())
    await asyncio.sleep(0)  # the task now awaits run(lock.acquire())
    await asyncio.sleep(0)
    # Block the caller's loop until the writer loop holds the lock for this entry: the result is then on
    # its way but cannot arrive before the cancel below, whatever the timing.
    lock = db._thread.lock
    deadline = time.monotonic() + 2
    while not lock.locked() and time.monotonic() < deadline:
        time.sleep(0.001)  # noqa: ASYNC251 - keeping the caller's loop from running is the point
    assert lock.locked()
    entering.cancel()
    with pytest.raises(asyncio.CancelledError):
        await entering
    await asyncio.wait_for(db.write(noop), 0.3)  # TimeoutError while the lock is leaked
