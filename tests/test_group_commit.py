"""Group commit: concurrent small writes share transactions; results, errors and cancellation stay per job."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from bot.group_commit import GroupCommit
from core.messaging.inbound import record_inbound
from core.models import InboundEvent, Supplier


def _store(key: str):
    async def job(session) -> bool:
        return await record_inbound(session, platform="console", user_id="u", dedupe_key=key,
                                    received_at=datetime.now(UTC))

    return job


async def _count(db, model) -> int:
    async with db.read() as s:
        return (await s.execute(select(func.count()).select_from(model))).scalar_one()


async def test_concurrent_jobs_share_transactions_and_keep_their_own_results(db):
    gc = GroupCommit(db)
    keys = [f"k{i % 40}" for i in range(60)]  # 20 repeats of earlier keys, some inside the same batch
    results = await asyncio.gather(*(gc.submit(_store(k)) for k in keys))
    assert sum(results) == 40  # each key is new exactly once
    seen: set[str] = set()
    for key, new in zip(keys, results, strict=True):
        assert new == (key not in seen)
        seen.add(key)
    assert await _count(db, InboundEvent) == 40
    assert 1 <= gc.transactions < 60  # batched, not one transaction per job
    await gc.close()


async def test_a_failing_job_fails_its_batch_and_nothing_of_it_is_committed(db):
    gc = GroupCommit(db)

    async def add(session) -> None:
        session.add(Supplier(code="S1", name="one"))
        await session.flush()

    async def boom(session) -> None:
        raise RuntimeError("broken job")

    outcome = await asyncio.gather(gc.submit(add), gc.submit(boom), return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcome)  # the same batch: both callers learn it
    assert await _count(db, Supplier) == 0
    assert await gc.submit(add) is None  # the next batch works
    assert await _count(db, Supplier) == 1


async def test_on_commit_runs_even_if_the_caller_was_cancelled(db):
    gc = GroupCommit(db)
    committed: list[bool] = []

    async def slow(session) -> bool:
        await asyncio.sleep(0.05)
        return await _store("late")(session)

    waiter = asyncio.create_task(gc.submit(slow, on_commit=committed.append))
    await asyncio.sleep(0.01)  # the batch is running
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await gc.close()
    assert committed == [True]
    assert await _count(db, InboundEvent) == 1


async def test_a_failing_on_commit_callback_neither_hangs_its_batch_nor_stops_later_ones(db):
    gc = GroupCommit(db)

    def boom(_result) -> None:
        raise RuntimeError("shutting down: no new background tasks")

    results = await asyncio.wait_for(asyncio.gather(gc.submit(_store("a"), on_commit=boom), gc.submit(_store("b"))),
                                     10)
    assert results == [True, True]
    assert await asyncio.wait_for(gc.submit(_store("c"), on_commit=boom), 10) is True
    assert await _count(db, InboundEvent) == 3
    await gc.close()
