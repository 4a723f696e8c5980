"""The cheap read paths chat messages take: db.fetch (reader threads on SQLite) and a bounded read pool."""

from __future__ import annotations

import asyncio
import threading

import pytest
from sqlalchemy import bindparam, event, select, text

from core.models import User
from core.storage import Database, Fast
from tests.factories import seed

BY_WECOM = Fast(select(User.id, User.name, User.roles).where(User.wecom_user_id == bindparam("uid")))


async def test_fetch_returns_what_a_session_returns(db: Database) -> None:
    await db.write(seed)
    async with db.read() as s:
        expected = list((await s.execute(BY_WECOM.stmt, {"uid": "zhang"})).all())
    rows = await db.fetch(BY_WECOM, {"uid": "zhang"})
    assert rows == expected and rows[0].name == "张库管" and rows[0].roles == "warehouse"
    assert await db.fetch(BY_WECOM, {"uid": "nobody"}) == []


async def test_fetch_sees_each_commit(db: Database) -> None:
    await db.write(seed)

    async def add(s) -> None:
        s.add(User(name="李采购", wecom_user_id="li", roles="purchasing"))

    assert await db.fetch(BY_WECOM, {"uid": "li"}) == []
    await db.write(add)
    assert [r.name for r in await db.fetch(BY_WECOM, {"uid": "li"})] == ["李采购"]


async def test_fetch_on_sqlite_runs_on_reader_threads_without_a_session(db: Database) -> None:
    if not db.is_sqlite:
        pytest.skip("SQLite's reader threads; PostgreSQL runs fetch in a read session")
    await db.write(seed)
    seen: list[str] = []
    event.listen(db.read_engine.sync_engine, "before_cursor_execute", lambda *a: seen.append("session"))
    rows = await asyncio.gather(*(db.fetch(BY_WECOM, {"uid": "zhang"}) for _ in range(20)))
    assert all(r[0].name == "张库管" for r in rows)
    assert seen == []  # no SQLAlchemy session or connection executed anything
    names = {t.name for t in threading.enumerate()}
    assert any(n.startswith("jxcbot-sqlite-reader") for n in names)
    with pytest.raises(Exception, match=r"readonly|read-only|attempt to write"):
        await db.fetch(Fast(text("INSERT INTO users (name, department, roles) VALUES ('x', '', '')")))
    await db.dispose()
    assert not any(t.name.startswith("jxcbot-sqlite-reader") and t.is_alive() for t in threading.enumerate())
    assert await db.fetch(BY_WECOM, {"uid": "zhang"})  # usable again after dispose, like the engines


async def test_many_concurrent_reads_share_a_bounded_pool(db: Database) -> None:
    """100 handlers reading at once wait for pooled connections instead of opening (and closing) their own:
    each new SQLite connection costs a thread, an open and a schema parse."""
    if not db.is_sqlite:
        pytest.skip("the SQLite read pool")
    await db.write(seed)
    opened: list[object] = []
    event.listen(db.read_engine.sync_engine, "connect", lambda conn, rec: opened.append(conn))

    async def one() -> str:
        async with db.read() as s:
            await asyncio.sleep(0.01)  # hold the connection so the reads overlap
            return (await s.execute(select(User.name))).scalar_one()

    assert set(await asyncio.gather(*(one() for _ in range(100)))) == {"张库管"}
    assert 1 <= len(opened) <= db.read_engine.pool.size()
