"""Approval-click benchmark: N count discrepancies in three-party sign-off, each signed by its warehouse, purchasing
and sales approver clicking 同意 on their WeCom cards (encrypted template_card_event callbacks), the three clicks of
a document sent together and all documents concurrently; against a bare aiohttp handler taking the same callbacks.

Measured: clicks/s (acknowledged, and until every document is posted), click-ack p50/p99, and card-update p99 —
from a click leaving the client to the fake WeCom accepting the update_template_card for that clicker's card (the
click's single-use ResponseCode). Checked: every approval decided, every document posted exactly once."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import yarl
from sqlalchemy import func, select

from bench.callback import PATH, StampedList, client_session, fire, log, pct
from bench.report import emit
from cards.parts import split_message
from core.approvals.engine import Actor, open_round
from core.approvals.evidence import attach_photo
from core.approvals.policy import policy_for
from core.approvals.views import approval_view
from core.config import Settings
from core.ledger.documents import LineInput, create_document, get_document, post_document, submit_document
from core.messaging.outbound import Outbound
from core.messaging.people import by_name
from core.messaging.recipients import ToRole
from core.models import Approval, ApprovalEvent, Document, Product, StockMove, User, Warehouse
from core.storage import Database
from core.storage.migrate import recreate_schema
from handlers.approval_cards import approval_card
from tests.chat import PNG
from tests.fakes.wecom import CallbackDriver, FakeWeCom
from tests.server_proc import free_port, serve_bot, spawn, stop

TOKEN = "jxcbotBenchToken"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APPROVERS = (("库管甲", "warehouse", "wh1"), ("采购乙", "purchasing", "pu1"), ("销售丙", "sales", "sa1"))


@dataclass(frozen=True)
class Click:
    """One prepared click: who, on which document, its ResponseCode, and the encrypted callback."""

    user: str
    number: str
    code: str
    query: str
    body: bytes


async def seed(db: Database, settings: Settings, docs: int) -> list[str]:
    """The three approvers, N products with stock in one warehouse and one count discrepancy per product (typed,
    photographed) with its sign-off opened; the discrepancy numbers."""

    async def work(s: Any) -> list[str]:
        s.add(Warehouse(code="WH1", name="中央仓", kind="central"))
        s.add_all(User(name=n, roles=r, wecom_user_id=w, department="测试") for n, r, w in APPROVERS)
        s.add(User(name="盘点员", roles="warehouse", department="测试"))
        s.add_all(Product(sku=f"P{i:04d}", name=f"商品{i:04d}", category="原料", stock_unit="kg", purchase_unit="kg",
                          purchase_factor=1) for i in range(docs))
        await s.flush()
        counter = await by_name(s, "盘点员")
        assert counter is not None
        receipt = await create_document(s, settings, "purchase_receipt",
                                        [LineInput(f"P{i:04d}", 100, "kg") for i in range(docs)], warehouse="WH1")
        await submit_document(s, settings, receipt)
        await post_document(s, settings, receipt)
        numbers = []
        for i in range(docs):
            count = await create_document(s, settings, "stock_count", [LineInput(f"P{i:04d}", 0, "kg",
                                                                                 counted_qty=Decimal(98))],
                                          warehouse="WH1", created_by="盘点员")
            await submit_document(s, settings, count)
            number = await s.scalar(select(Document.number).where(Document.ref_document_id == count.id))
            doc = await get_document(s, number)
            for ln in doc.lines:
                ln.discrepancy_type = "自然损耗"
            await attach_photo(s, doc, PNG, counter.id, "console", doc.created_at)
            await open_round(s, doc, policy_for(settings, doc.type), Actor(counter, "console", "bench"),
                             doc.created_at)
            numbers.append(number)
        return numbers

    return await db.write(work)


async def queue_cards(db: Database, settings: Settings, numbers: Sequence[str]) -> None:
    """Each role's card of each sign-off, queued for the server's outbox sender to deliver to the fake WeCom."""
    out = Outbound(split_message, platforms=frozenset({"wecom"}))

    async def work(s: Any) -> None:
        for number in numbers:
            view = await approval_view(s, number)
            for role in view.roles_to_ask():
                await out.send(s, f"bench:card:{number}:{role}", ToRole(role),
                               approval_card(view, settings.timezone, role), view.approval.created_at)

    await db.write(work)


def prepare(fake: FakeWeCom, driver: CallbackDriver, numbers: Sequence[str]) -> list[Click]:
    """One click per approver and document on the card they got (document-major: a document's three clicks
    together), each with a fresh ResponseCode minted by the fake, encrypted and signed."""
    cards: dict[tuple[str, str], dict] = {}
    for m in fake.messages:
        if m["msgtype"] == "template_card":
            card = m["template_card"]
            number = next((n for n in numbers if n in json.dumps(card, ensure_ascii=False)), None)
            if number is not None:
                cards.setdefault((m["touser"], number), card)
    clicks = []
    for t, number in enumerate(numbers):
        for _name, _role, user in APPROVERS:
            card = cards[(user, number)]
            key = next(b["key"] for b in card["button_list"] if b.get("text") == "同意")
            code = fake.click(user, card["task_id"])
            params, body = driver.post(driver.card_click_xml(user, card["task_id"], key, code,
                                                             create_time=1_900_000_000 + t))
            clicks.append(Click(user, number, code, "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items()),
                                body))
    return clicks


async def fire_all(base: str, clicks: Sequence[Click], senders: int) -> tuple[list[tuple[Click, float, float, int]],
                                                                               float]:
    """`senders` concurrent tasks taking the next click as soon as their previous one is answered."""
    work = iter(clicks)
    samples: list[tuple[Click, float, float, int]] = []

    async def sender(session: aiohttp.ClientSession) -> None:
        for c in work:
            sample = await fire(session, yarl.URL(f"{base}{PATH}?{c.query}", encoded=True), c)  # type: ignore[arg-type]
            samples.append((c, sample.sent, sample.acked, sample.status))

    async with client_session(senders) as session:
        start = time.perf_counter()
        await asyncio.gather(*(sender(session) for _ in range(senders)))
    return samples, start


async def posted(db: Database) -> int:
    async with db.read() as s:
        return await s.scalar(select(func.count()).select_from(ApprovalEvent).where(ApprovalEvent.action == "posted"))


def write_config(path: Path, url: str, port: int, fake: FakeWeCom) -> str:
    """The bot's jxcbot.toml: the fake WeCom, and per-user limits raised so WeCom's own 30 messages per user and
    minute (which would pace 100 card updates to one approver over minutes) do not hide the bot's speed."""
    lines = ["[database]", f"url = {json.dumps(url)}", "[server]", 'host = "127.0.0.1"', f"port = {port}",
             "[wecom]", f"corp_id = {json.dumps(fake.corp_id)}", f"agent_id = {fake.agent_id}",
             f"secret = {json.dumps(fake.secret)}", f"token = {json.dumps(TOKEN)}",
             f"encoding_aes_key = {json.dumps(AES_KEY)}", f"api_base = {json.dumps(fake.base_url)}",
             "[outbox.limits]", '"wecom:user" = "100000/60"']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


async def run(url: str, docs: int, senders: int, workdir: str, t0: float) -> dict[str, Any]:
    fake = FakeWeCom(messages=StampedList(), updates=StampedList(), per_user_per_minute=10**9,
                     per_user_per_hour=10**9)
    driver = CallbackDriver(TOKEN, AES_KEY, fake.corp_id, fake.agent_id)
    db = Database(url)
    settings = Settings(database_url=url)
    proc = None
    try:
        await recreate_schema(db)
        log(t0, f"seeding {docs} discrepancies in sign-off (3 approvers each)")
        numbers = await seed(db, settings, docs)
        await fake.start()
        port = free_port()
        proc = await serve_bot(write_config(Path(workdir) / "jxcbot.toml", url, port, fake), port)
        base = f"http://127.0.0.1:{port}"
        await queue_cards(db, settings, numbers)
        deadline = time.perf_counter() + 120
        while sum(m["msgtype"] == "template_card" for m in fake.messages) < 3 * docs:
            if time.perf_counter() > deadline:
                raise RuntimeError("the sign-off cards did not all arrive at the fake")
            await asyncio.sleep(0.05)
        clicks = await asyncio.to_thread(prepare, fake, driver, numbers)
        updates_before = len(fake.updates)
        log(t0, f"bot: {len(clicks)} clicks from {senders} concurrent senders")
        samples, start = await fire_all(base, clicks, senders)
        acked = max(s[2] for s in samples)
        deadline = time.perf_counter() + 120
        while await posted(db) < docs or len(
                {u["response_code"] for u in fake.updates[updates_before:]} & {c.code for c in clicks}) < len(clicks):
            if time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.02)
        done = time.perf_counter()
    finally:
        if proc is not None:
            await stop(proc)
        await fake.close()
    async with db.read() as s:
        posted_events = await s.scalar(select(func.count()).select_from(ApprovalEvent)
                                       .where(ApprovalEvent.action == "posted"))
        approved = await s.scalar(select(func.count()).select_from(Approval).where(Approval.status == "approved"))
        moves = await s.scalar(select(func.count()).select_from(StockMove)
                               .join(Document, Document.id == StockMove.document_id)
                               .where(Document.type == "discrepancy"))
        on_hand = [r for r in (await s.execute(select(Product.sku)))]
    await db.dispose()
    sent = {c.code: t for c, t, _, _ in samples}
    update_at = {u["response_code"]: at for u, at in zip(fake.updates[updates_before:],
                                                         fake.updates.at[updates_before:], strict=True)}
    card_ms = [(update_at[code] - t) * 1000 for code, t in sent.items() if code in update_at]
    acks = [(a - s) * 1000 for _, s, a, st in samples if st == 200]

    bare_port = free_port()
    bare = await spawn(["-m", "bench.bare", str(bare_port), PATH], f"http://127.0.0.1:{bare_port}/")
    try:
        bare_samples, bare_start = await fire_all(f"http://127.0.0.1:{bare_port}", clicks, senders)
    finally:
        await stop(bare)
    bare_rate = len(bare_samples) / (max(s[2] for s in bare_samples) - bare_start)
    ok = sum(1 for s in samples if s[3] == 200)
    return {
        "documents": docs, "clicks": len(clicks), "senders": senders, "database": url.split("@")[-1],
        "clicks_per_s_acked": round(ok / (acked - start), 1),
        "clicks_per_s_until_all_posted": round(len(clicks) / (done - start), 1),
        "click_ack_ms_p50": pct(acks, 50), "click_ack_ms_p99": pct(acks, 99),
        "card_update_ms_p50": pct(card_ms, 50), "card_update_ms_p99": pct(card_ms, 99),
        "card_updates_seen": len(card_ms), "bare_per_s": round(bare_rate, 1),
        "bare_ack_ms_p99": pct([(a - s) * 1000 for _, s, a, st in bare_samples if st == 200], 99),
        "ratio": round((ok / (acked - start)) / bare_rate, 3),
        "posted_events": posted_events, "approved": approved, "discrepancy_moves": moves, "products": len(on_hand),
        "errors": len(clicks) - ok, "all_posted_once": posted_events == docs and approved == docs and moves == docs,
        "every_clicker_card_updated": len(card_ms) == len(clicks),
    }


def render(r: dict[str, Any]) -> str:
    return "\n".join([
        f"jxcbot approval-click benchmark: {r['documents']} discrepancies × 3 approvers = {r['clicks']} WeCom card "
        f"clicks, {r['senders']} concurrent senders ({r['database']})",
        f"  clicks/s, acknowledged          {r['clicks_per_s_acked']:>9,.1f}",
        f"  clicks/s, until all posted      {r['clicks_per_s_until_all_posted']:>9,.1f}",
        f"  click ack p50 / p99, ms         {r['click_ack_ms_p50']:>9} / {r['click_ack_ms_p99']}",
        f"  card update p50 / p99, ms       {r['card_update_ms_p50']:>9} / {r['card_update_ms_p99']}"
        f"   ({r['card_updates_seen']} of {r['clicks']} clickers' cards updated)",
        f"  bare handler, callbacks/s       {r['bare_per_s']:>9,.1f}   (ack p99 {r['bare_ack_ms_p99']} ms)",
        f"  ratio (acked clicks ÷ bare)     {r['ratio']:>9.3f}",
        f"  checks: {r['posted_events']} posted, {r['approved']} approvals approved, {r['discrepancy_moves']} "
        f"stock moves, {r['errors']} failed clicks → "
        + ("every document posted exactly once" if r["all_posted_once"] else "PROBLEM: not posted exactly once"),
    ])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.approvals", description=__doc__)
    p.add_argument("--json", action="store_true")
    p.add_argument("--docs", type=int, default=100, help="discrepancy documents (default 100)")
    p.add_argument("--senders", type=int, default=30, help="concurrent click senders (default 30)")
    p.add_argument("--database-url", help="PostgreSQL URL (its schema is DROPPED and recreated); default a fresh "
                                          "SQLite file")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="jxcbench-approvals-")
    url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'approvals.db'}"
    try:
        result = asyncio.run(run(url, args.docs, args.senders, tmp, t0))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    emit(render(result) + f"\nTotal wall time {time.perf_counter() - t0:.1f} s", result, args.json)
    return 0 if result["all_posted_once"] and result["every_clicker_card_updated"] and not result["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
