"""The console page in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import zlib

import pytest
from aiohttp.test_utils import TestServer

from bot.server import CONSOLE_LOG, build_app
from cards.model import Button, Message
from core.messaging.targets import Target
from tests.factories import seed_chat_users

CHROMIUM = os.environ.get("JXCBOT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
HAVE_CHROMIUM = os.path.exists(CHROMIUM)


def tiny_png(width: int = 3, height: int = 2) -> bytes:
    """A valid RGB PNG (red pixels) built by hand."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.fixture
async def server(db, settings):
    await seed_chat_users(db, settings, manager=True)
    srv = TestServer(build_app(settings, db), host="127.0.0.1")
    await srv.start_server()
    yield srv
    await srv.close()


@pytest.fixture
async def page(server):
    """A Chromium page on the console with 张库管 chosen."""
    if not HAVE_CHROMIUM:
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium; .ci/run does)")
    playwright = pytest.importorskip("playwright.async_api")
    async with playwright.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                           args=["--no-sandbox", "--disable-background-networking"])
        try:
            p = await browser.new_page()
            p.on("dialog", lambda d: d.dismiss())  # an alert would be a failure to show the error in the page
            await p.goto(str(server.make_url("/console")))
            await p.locator(".user", has_text="张库管").click()
            await p.get_by_text("库管 · 仓储部").wait_for()  # roles as users know them
            yield p
        finally:
            await browser.close()


def deliver(server: TestServer, message: Message, user: str = "张库管") -> None:
    """What the outbox does for the console: the page shows it on its next poll."""
    server.app[CONSOLE_LOG].add("bot", Target("console", "user", user), message)


async def test_console_in_chromium(server, page):
    await page.fill("#text", "库存 奶油")
    await page.click("button[type=submit]")
    reply = page.locator(".from-bot").filter(has_text="淡奶油")
    await reply.wait_for(timeout=10_000)
    text = await reply.inner_text()
    assert "WH1" in text
    # markdown as the phone shows it: bold and quotes rendered, no markup characters left
    assert "**" not in text and not any(line.startswith(">") for line in text.splitlines())
    assert await reply.locator("strong").count() >= 1
    assert "WH1" in await reply.locator("blockquote").first.inner_text()
    assert await page.locator(".from-user").filter(has_text="库存 奶油").count() == 1
    # another user sees only their own conversation
    await page.locator(".user", has_text="李经理").click()
    assert await page.locator(".from-bot").filter(has_text="淡奶油").count() == 0


async def test_markdown_elements_render_as_on_the_phone(server, page):
    deliver(server, Message("markdown", title="通知", text=(
        "### 今日提醒\n**加粗** 和 *斜体* 与 `CREAM`\n> 引用一行\n> 引用二行\n- 甲\n- 乙\n1. 第一\n2. 第二\n"
        "[打开链接](https://example.com/a?b=1)\n第一行\n第二行\n<font color=\"warning\">3 箱</font>")))
    box = page.locator(".from-bot[data-kind=markdown]")
    await box.wait_for()
    assert await box.locator("h3").inner_text() == "今日提醒"
    assert await box.locator("strong").inner_text() == "加粗"
    assert await box.locator("em").inner_text() == "斜体"
    assert await box.locator("code").inner_text() == "CREAM"
    assert await box.locator("blockquote").count() == 1
    assert (await box.locator("blockquote").inner_text()).splitlines() == ["引用一行", "引用二行"]
    assert await box.locator("ul li").all_inner_texts() == ["甲", "乙"]
    assert await box.locator("ol li").all_inner_texts() == ["第一", "第二"]
    a = box.locator("a", has_text="打开链接")
    assert await a.get_attribute("href") == "https://example.com/a?b=1"
    assert await a.get_attribute("rel") == "noopener noreferrer"
    assert await box.locator(".warning").inner_text() == "3 箱"
    lines = (await box.inner_text()).splitlines()
    assert "第一行" in lines and "第二行" in lines  # a single line break is kept


async def test_script_injection_is_shown_as_text(server, page):
    attack = ('<script>window.pwned = 1</script> <img src=x onerror="window.pwned = 2"> '
              '[点我](javascript:window.pwned=3) ![x](javascript:window.pwned=4) <b onmouseover=alert(1)>b</b>')
    deliver(server, Message("markdown", text=f"**注意** {attack}"))
    deliver(server, Message("card", title="<img src=x onerror=window.pwned=5>", text=attack,
                            buttons=(Button("<script>window.pwned=6</script>", "test:x"),)))
    await page.fill("#text", attack)  # the user's own message and the bot's 没有看懂「…」 answer
    await page.click("button[type=submit]")
    await page.locator(".from-bot", has_text="没有看懂").wait_for(timeout=10_000)
    await page.locator(".card").wait_for()
    log = page.locator("#log")
    assert await log.locator("script, b, iframe").count() == 0
    assert await log.locator("img").count() == 0  # no image from markup (javascript: is no image URL either)
    assert await log.locator("a").count() == 0  # a javascript: link stays text
    assert await page.evaluate("window.pwned") is None
    text = await log.inner_text()
    assert "<script>window.pwned = 1</script>" in text and 'onerror="window.pwned = 2"' in text
    assert await log.locator(".from-user", has_text="<script>").count() == 1
    await log.locator(".card .title").hover()
    assert await page.evaluate("window.pwned") is None


async def test_card_buttons_send_the_click_as_the_chosen_user(server, page):
    buttons = (Button("同意", "test:approve", "primary"), Button("驳回", "test:reject", "danger"))
    deliver(server, Message("card", title="采购申请待审批", text="**奶油** 20 箱\n> 申请人：张库管", buttons=buttons,
                            card_id="c-1"))
    card = page.locator(".card[data-card-id='c-1']")
    await card.wait_for()
    assert await card.locator(".title").inner_text() == "采购申请待审批"
    assert await card.locator("strong").inner_text() == "奶油"
    assert await card.locator("blockquote").inner_text() == "申请人：张库管"
    assert await card.locator("button").all_inner_texts() == ["同意", "驳回"]
    assert await card.locator("button.primary").inner_text() == "同意"
    async with page.expect_request(lambda r: r.url.endswith("/console/api/click")) as clicked:
        await card.locator("button", has_text="驳回").click()
    assert json.loads((await clicked.value).post_data) == {"user": "张库管", "key": "test:reject"}
    # the dispatcher answered the click (no action has the key "test:…")
    await page.locator(".from-bot", has_text="这个按钮已失效或无法识别").wait_for(timeout=10_000)


async def test_a_card_with_a_known_card_id_is_updated_in_place(server, page):
    deliver(server, Message("card", title="审批", text="待审批", buttons=(Button("同意", "test:ok"),), card_id="c-9"))
    deliver(server, Message("text", text="之后的一条消息"))
    await page.locator(".from-bot", has_text="之后的一条消息").wait_for()
    deliver(server, Message("card", title="审批", text="**已同意**（李经理）", card_id="c-9"))
    card = page.locator(".card[data-card-id='c-9']")
    await card.locator("strong", has_text="已同意").wait_for()
    assert await card.count() == 1  # replaced, not added
    assert await card.locator("button").count() == 0  # the update has no buttons any more
    assert "待审批" not in await page.locator("#log").inner_text()
    kinds = await page.locator("#log .msg").evaluate_all("els => els.map(e => e.dataset.kind)")
    assert kinds == ["card", "text"]  # where the card first was


async def test_an_uploaded_picture_appears_and_a_bad_one_is_refused_in_chinese(server, page, tmp_path):
    good = tmp_path / "照片.png"
    good.write_bytes(tiny_png())
    await page.set_input_files("#picture", str(good))
    img = page.locator(".from-user img")
    await img.wait_for(timeout=10_000)
    assert await img.evaluate("i => i.complete && i.naturalWidth") == 3  # a real picture, decoded
    assert await page.locator("#status").inner_text() == ""
    fake = tmp_path / "假图片.png"
    fake.write_bytes(b"just text renamed to .png")
    await page.set_input_files("#picture", str(fake))
    await page.locator("#status", has_text="不是 PNG 或 JPEG").wait_for()
    assert "处理办法" in await page.locator("#status").inner_text()
    assert await page.locator(".from-user img").count() == 1


async def test_a_too_long_message_is_refused_in_chinese_in_the_page(server, page):
    await page.fill("#text", "奶" * 100_000)
    await page.click("button[type=submit]")
    await page.locator("#status", has_text="字符").wait_for()
    assert "Maximum request body" not in await page.locator("#status").inner_text()
    assert await page.input_value("#text") != ""  # kept, to be shortened
    assert await page.locator(".from-user").count() == 0
