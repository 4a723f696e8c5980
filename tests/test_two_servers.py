"""Two `jxcbot serve` processes on one PostgreSQL database: every reply is sent once, retries included."""

from __future__ import annotations

import asyncio
import os
from collections import Counter

import aiohttp
import pytest

from core.storage import Database
from core.storage.migrate import recreate_schema
from tests.conftest import PG_URL
from tests.factories import seed_chat_users
from tests.fakes.wecom import CallbackDriver, FakeWeCom
from tests.server_proc import free_port, serve_bot, stop, write_config

TOKEN = "jxcbotTwoServersToken"
AES_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"
USERS = [f"two{i:02d}" for i in range(40)]

pytestmark = pytest.mark.skipif(not PG_URL, reason="two server instances share a database only on PostgreSQL")


async def test_two_server_processes_send_each_reply_once(tmp_path, settings):
    db = Database(PG_URL)
    await recreate_schema(db)

    await seed_chat_users(db, settings, USERS)
    await db.dispose()
    async with FakeWeCom(per_user_per_minute=10**9) as fake:
        ports = [free_port(), free_port()]
        configs = []
        for n, port in enumerate(ports):
            configs.append(write_config(tmp_path / f"jxcbot{n}.toml", PG_URL, port, fake, TOKEN, AES_KEY,
                                        {"batch_size": 3, "poll_interval": 0.1}))
        env_guard = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("JXCBOT_") and k != "JXCBOT_TEST"}
        procs = []
        try:
            procs = [await serve_bot(c, p) for c, p in zip(configs, ports, strict=True)]
            driver = CallbackDriver(TOKEN, AES_KEY, fake.corp_id, fake.agent_id)
            async with aiohttp.ClientSession() as http:

                async def deliver(port: int, params: dict, body: bytes) -> int:
                    async with http.post(f"http://127.0.0.1:{port}/wecom/callback", params=params, data=body) as r:
                        return r.status

                shots = []
                for i, user in enumerate(USERS):
                    params, body = driver.post(driver.text_xml(user, "库存 奶油", msg_id=5_000 + i))
                    shots.append(deliver(ports[i % 2], params, body))
                    if i % 4 == 0:  # WeCom retries this one, and the retry reaches the other instance
                        retry_params, retry_body = driver.post(driver.text_xml(user, "库存 奶油", msg_id=5_000 + i))
                        shots.append(deliver(ports[(i + 1) % 2], retry_params, retry_body))
                assert set(await asyncio.gather(*shots)) == {200}
            for _ in range(400):
                if len(fake.messages) >= len(USERS):
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # a second copy, if any, would arrive by now
            assert Counter(m["touser"] for m in fake.messages) == Counter(USERS)
            assert all("淡奶油" in str(m) for m in fake.messages)
        finally:
            for proc in procs:
                await stop(proc, 30)
            os.environ.update(env_guard)
