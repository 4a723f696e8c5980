"""The console page in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright)."""

from __future__ import annotations

import os
import shutil

import pytest
from aiohttp.test_utils import TestServer

from bot.server import build_app
from tests.factories import seed_chat_users

CHROMIUM = os.environ.get("JXCBOT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
HAVE_CHROMIUM = os.path.exists(CHROMIUM)


@pytest.fixture
async def server(db, settings):
    await seed_chat_users(db, settings, manager=True)
    srv = TestServer(build_app(settings, db), host="127.0.0.1")
    await srv.start_server()
    yield srv
    await srv.close()


async def test_console_in_chromium(server):
    if not HAVE_CHROMIUM:
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium; .ci/run does)")
    playwright = pytest.importorskip("playwright.async_api")
    async with playwright.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                           args=["--no-sandbox", "--disable-background-networking"])
        try:
            page = await browser.new_page()
            await page.goto(str(server.make_url("/console")))
            await page.locator(".user", has_text="张库管").click()
            await page.get_by_text("库管 · 仓储部").wait_for()  # roles as users know them
            await page.fill("#text", "库存 奶油")
            await page.click("button[type=submit]")
            reply = page.locator(".from-bot").filter(has_text="淡奶油")
            await reply.wait_for(timeout=10_000)
            assert "WH1" in await reply.inner_text()
            assert await page.locator(".from-user").filter(has_text="库存 奶油").count() == 1
            # another user sees only their own conversation
            await page.locator(".user", has_text="李经理").click()
            assert await page.locator(".from-bot").filter(has_text="淡奶油").count() == 0
        finally:
            await browser.close()
