"""The server process killed with SIGKILL while WeCom is down: after a restart the backlog is delivered, none twice."""

from __future__ import annotations

import asyncio
import os
import signal

import aiohttp
import pytest

from core.models import OutboxMessage
from core.storage import Database
from core.storage.migrate import recreate_schema
from tests.conftest import PG_URL
from tests.factories import seed_chat_users
from tests.fakes.wecom import PATH_SEND, CallbackDriver, FakeWeCom, Fault
from tests.server_proc import free_port, serve_bot, stop, write_config

TOKEN = "jxcbotRestartToken"
AES_KEY = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefg"
USERS = ("u1", "u2", "u3", "u4", "u5")

pytestmark = pytest.mark.skipif(bool(PG_URL), reason="runs the server as a separate process on its own SQLite file")


async def _pending(db: Database) -> int:
    from sqlalchemy import func, select

    async with db.read() as s:
        return (await s.execute(select(func.count()).select_from(OutboxMessage)
                                .where(OutboxMessage.status == "pending"))).scalar_one()


async def test_sigkill_with_a_backlog_then_restart_delivers_it_once(tmp_path, settings):
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    db = Database(url)
    await recreate_schema(db)

    await seed_chat_users(db, settings, USERS)
    port = free_port()
    async with FakeWeCom() as fake:
        fake.inject(PATH_SEND, *[Fault(status=502)] * 10_000)  # WeCom is down
        config = write_config(tmp_path / "jxcbot.toml", url, port, fake, TOKEN, AES_KEY, {
            "base_delay": 0.2, "max_delay": 0.5, "send_timeout": 2, "batch_size": 1, "lease_seconds": 12,
            "poll_interval": 0.1})
        env_guard = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("JXCBOT_") and k != "JXCBOT_TEST"}
        try:
            proc = await serve_bot(config, port)
            driver = CallbackDriver(TOKEN, AES_KEY, fake.corp_id, fake.agent_id)
            async with aiohttp.ClientSession() as http:
                for i, user in enumerate(USERS):
                    params, body = driver.post(driver.text_xml(user, "库存 奶油", msg_id=9000 + i))
                    async with http.post(f"http://127.0.0.1:{port}/wecom/callback", params=params, data=body) as r:
                        assert r.status == 200
            for _ in range(300):  # every reply queued and at least one send tried (and failed)
                if await _pending(db) == len(USERS) and fake.calls(PATH_SEND) >= len(USERS):
                    break
                await asyncio.sleep(0.05)
            assert fake.messages == []
            proc.send_signal(signal.SIGKILL)
            await stop(proc)  # reaps it and removes its stderr file

            fake._faults.clear()  # WeCom is back (drop the faults still queued)
            proc = await serve_bot(config, port)
            try:
                for _ in range(600):
                    if len(fake.messages) >= len(USERS):
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)
                assert sorted(m["touser"] for m in fake.messages) == sorted(USERS)
                assert all("淡奶油" in str(m) for m in fake.messages)
            finally:
                await stop(proc, 30)
        finally:
            os.environ.update(env_guard)
            await db.dispose()
