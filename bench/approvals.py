"""Approval-click benchmark: discrepancies in three-party sign-off, signed by WeCom card clicks sent concurrently."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import yarl
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bench import callback
from bench.callback import PATH, Shot, StampedList, client_session, fire, log, pct
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
from core.models import Approval, ApprovalEvent, Document, Product, StockBalance, StockMove, User, Warehouse
from core.models.approvals import ApprovalStep
from core.storage import Database
from core.storage.migrate import recreate_schema
from handlers.approval_cards import approval_card

# The fakes live with the tests (the bench runs from the repository root, where `tests` is importable).
from tests.chat import PNG
from tests.fakes.wecom import CallbackDriver, FakeWeCom
from tests.server_proc import free_port, serve_bot, spawn, stop

TOKEN = "jxcbotBenchToken"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters
APPROVERS = (("库管甲", "warehouse", "wh1"), ("采购乙", "purchasing", "pu1"), ("销售丙", "sales", "sa1"))
BOOK = Decimal(100)  # received before the count
COUNTED = Decimal(98)  # counted: each discrepancy posts -2
BARE_ROUNDS = 3  # the yardsticks get through 300 callbacks in a fraction of a second: the median of 3 rounds
WAIT_SECONDS = 120.0  # for the cards to arrive, and after the last ack for every posting and card update


@dataclass(frozen=True)
class Click:
    """One prepared click: the document, its ResponseCode, the plaintext callback and its encrypted form."""

    number: str
    code: str
    plaintext: str
    shot: Shot


@dataclass(frozen=True)
class Timed:
    """One click's POST: perf_counter at request start and at the full response, HTTP status (0 = failed)."""

    click: Click
    sent: float
    acked: float
    status: int

    @property
    def ack_ms(self) -> float:
        return (self.acked - self.sent) * 1000


def product_sku(i: int) -> str:
    return f"P{i:04d}"


async def seed(db: Database, settings: Settings, docs: int) -> list[str]:
    """The three approvers (one per role, distinct people), a counter, `docs` products received into one warehouse
    and one count discrepancy per product (typed, photographed) with its sign-off opened through the engine with the
    discrepancy policy; the discrepancy numbers, in product order."""

    async def work(s: AsyncSession) -> list[str]:
        s.add(Warehouse(code="WH1", name="中央仓", kind="central"))
        s.add_all(User(name=n, roles=r, wecom_user_id=w, department="测试") for n, r, w in APPROVERS)
        s.add(User(name="盘点员", roles="warehouse", department="测试"))
        s.add_all(Product(sku=product_sku(i), name=f"商品{i:04d}", category="原料", stock_unit="kg",
                          purchase_unit="kg", purchase_factor=1) for i in range(docs))
        await s.flush()
        counter = await by_name(s, "盘点员")
        assert counter is not None
        receipt = await create_document(s, settings, "purchase_receipt",
                                        [LineInput(product_sku(i), BOOK, "kg") for i in range(docs)], warehouse="WH1")
        await submit_document(s, settings, receipt)
        await post_document(s, settings, receipt)
        numbers = []
        for i in range(docs):
            count = await create_document(s, settings, "stock_count",
                                          [LineInput(product_sku(i), 0, "kg", counted_qty=COUNTED)],
                                          warehouse="WH1", created_by="盘点员")
            await submit_document(s, settings, count)
            number = await s.scalar(select(Document.number).where(Document.ref_document_id == count.id))
            assert number is not None
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
    """Each role's card of each sign-off, queued for the server's outbox sender to deliver to the fake WeCom (as the
    submitting handler does)."""
    out = Outbound(split_message, platforms=frozenset({"wecom"}))

    async def work(s: AsyncSession) -> None:
        for number in numbers:
            view = await approval_view(s, number)
            for role in view.roles_to_ask():
                await out.send(s, f"bench:card:{number}:{role}", ToRole(role),
                               approval_card(view, settings.timezone, role), view.approval.created_at)

    await db.write(work)


def encrypt(driver: CallbackDriver, user: str, plaintext: str) -> Shot:
    params, body = driver.post(plaintext)
    return Shot(user, "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items()), body)


def prepare(fake: FakeWeCom, driver: CallbackDriver, numbers: Sequence[str], first_time: int) -> list[Click]:
    """One 同意 click per approver and document on the card the fake delivered to them (document-major: a
    document's three clicks next to each other, so they race), each with a fresh ResponseCode minted by the fake,
    encrypted and signed (blocking: CPU only)."""
    cards: dict[tuple[str, str], dict[str, Any]] = {}
    wanted = set(numbers)
    for m in fake.messages:
        if m["msgtype"] == "template_card":
            card = m["template_card"]
            text = json.dumps(card, ensure_ascii=False)
            for number in wanted:
                if number in text:
                    cards.setdefault((m["touser"], number), card)
    clicks = []
    for t, number in enumerate(numbers):
        for _name, _role, user in APPROVERS:
            card = cards[(user, number)]
            key = next(b["key"] for b in card["button_list"] if b.get("text") == "同意")
            code = fake.click(user, card["task_id"])
            plain = driver.card_click_xml(user, card["task_id"], key, code, create_time=first_time + t)
            clicks.append(Click(number, code, plain, encrypt(driver, user, plain)))
    return clicks


async def fire_all(base: str, clicks: Sequence[Click], senders: int) -> tuple[list[Timed], float]:
    """`senders` concurrent tasks, each posting the next unsent click as soon as its previous one is answered;
    the samples and perf_counter at the start."""
    work = iter(clicks)
    samples: list[Timed] = []

    async def sender(session: aiohttp.ClientSession) -> None:
        for c in work:  # one shared iterator: every click is sent exactly once
            s = await fire(session, yarl.URL(f"{base}{PATH}?{c.shot.query}", encoded=True), c.shot)
            samples.append(Timed(c, s.sent, s.acked, s.status))

    async with client_session(senders) as session:
        start = time.perf_counter()
        await asyncio.gather(*(sender(session) for _ in range(senders)))
    return samples, start


async def posted_count(db: Database) -> int:
    async with db.read() as s:
        return int(await s.scalar(select(func.count()).select_from(ApprovalEvent)
                                  .where(ApprovalEvent.action == "posted")) or 0)


async def verify(db: Database, numbers: Sequence[str]) -> dict[str, Any]:
    """The database after the clicks, document by document: each approval approved with its three steps approved
    by the approver holding the role, one `posted` event, the document posted with one stock move of
    COUNTED − BOOK, and each product's stock at COUNTED. The counts, and the numbers of the documents that fail."""
    expected_by = {role: name for name, role, _ in APPROVERS}
    async with db.read() as s:
        docs = {n: (i, st) for n, i, st in (await s.execute(
            select(Document.number, Document.id, Document.status).where(Document.number.in_(numbers)))).all()}
        ids = [i for i, _ in docs.values()]
        approvals = {d: (a, st) for a, d, st in (await s.execute(
            select(Approval.id, Approval.document_id, Approval.status).where(Approval.document_id.in_(ids)))).all()}
        users = {u: n for u, n in (await s.execute(select(User.id, User.name))).all()}
        steps: dict[int, list[tuple[str, str, str | None]]] = {}
        for a, role, st, by in (await s.execute(select(ApprovalStep.approval_id, ApprovalStep.role,
                                                       ApprovalStep.status, ApprovalStep.decided_by_id))).all():
            steps.setdefault(a, []).append((role, st, users.get(by) if by is not None else None))
        events = Counter((a, act) for a, act in (await s.execute(
            select(ApprovalEvent.approval_id, ApprovalEvent.action))).all())
        moves: dict[int, list[Decimal]] = {}
        for d, qty in (await s.execute(select(StockMove.document_id, StockMove.qty)
                                       .where(StockMove.document_id.in_(ids)))).all():
            moves.setdefault(d, []).append(Decimal(qty))
        stock = {sku: Decimal(q or 0) for sku, q in (await s.execute(
            select(Product.sku, func.sum(StockBalance.qty)).join(StockBalance, StockBalance.product_id == Product.id)
            .group_by(Product.sku))).all()}
    undecided, not_posted, posted_twice, wrong_stock = [], [], [], []
    approvals_approved = steps_approved = 0
    for k, number in enumerate(numbers):
        doc_id, status = docs.get(number, (None, None))
        approval_id, a_status = approvals.get(doc_id, (None, None)) if doc_id is not None else (None, None)
        own = steps.get(approval_id, []) if approval_id is not None else []
        approvals_approved += a_status == "approved"
        steps_approved += sum(st == "approved" for _, st, _ in own)
        if a_status != "approved" or len(own) != len(APPROVERS) or any(
                st != "approved" or by != expected_by.get(role) for role, st, by in own):
            undecided.append(number)
        n_posted = events[(approval_id, "posted")] if approval_id is not None else 0
        doc_moves = moves.get(doc_id, []) if doc_id is not None else []
        if n_posted > 1 or len(doc_moves) > 1:
            posted_twice.append(number)
        elif status != "posted" or n_posted != 1 or doc_moves != [COUNTED - BOOK]:
            not_posted.append(number)
        if stock.get(product_sku(k)) != COUNTED:
            wrong_stock.append(product_sku(k))
    return {
        "approvals_approved": approvals_approved, "steps_approved": steps_approved,
        "posted_events": sum(n for (a, act), n in events.items() if act == "posted"),
        "discrepancy_moves": sum(len(m) for m in moves.values()),
        "undecided": undecided, "not_posted": not_posted, "posted_twice": posted_twice, "wrong_stock": wrong_stock,
    }


def problems(r: dict[str, Any]) -> list[str]:
    """What went wrong in the run, in words (empty when nothing did)."""
    out = []
    for key, label in (("undecided", "sign-offs not decided by their three approvers"),
                       ("not_posted", "documents not posted"), ("posted_twice", "documents posted more than once"),
                       ("wrong_stock", "products whose stock is not the counted quantity")):
        if r[key]:
            out.append(f"{len(r[key])} {label} ({', '.join(r[key][:5])}{'…' if len(r[key]) > 5 else ''})")
    for key, label in (("errors", "clicks failed (no HTTP answer)"), ("non_200", "clicks answered non-200"),
                       ("card_updates_missing", "clickers' cards not updated"),
                       ("bare_errors", "bare-handler callbacks failed"),
                       ("store_errors", "store-only callbacks failed or non-200")):
        if r.get(key):
            out.append(f"{r[key]} {label}")
    return out


def write_config(path: Path, url: str, port: int, fake: FakeWeCom) -> str:
    """The bot's jxcbot.toml: the fake WeCom, and the per-user limit raised so WeCom's own 30 messages per user and
    minute (which would pace 100 card updates to one approver over minutes) do not hide the bot's speed."""
    lines = ["[database]", f"url = {json.dumps(url)}", "[server]", 'host = "127.0.0.1"', f"port = {port}",
             "[wecom]", f"corp_id = {json.dumps(fake.corp_id)}", f"agent_id = {fake.agent_id}",
             f"secret = {json.dumps(fake.secret)}", f"token = {json.dumps(TOKEN)}",
             f"encoding_aes_key = {json.dumps(AES_KEY)}", f"api_base = {json.dumps(fake.base_url)}",
             "[outbox.limits]", '"wecom:user" = "100000/60"']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@dataclass(frozen=True)
class Options:
    """What to run."""

    url: str
    docs: int
    warmup_docs: int
    senders: int
    workdir: str


async def bot_phase(opts: Options, fake: FakeWeCom, driver: CallbackDriver, t0: float) -> dict[str, Any]:
    """Seed, start `jxcbot serve`, deliver the cards, click the warm-up documents, then the measured ones; wait
    until every document is posted and every clicker's card updated; stop the bot and check the database."""
    db = Database(opts.url)
    settings = Settings(database_url=opts.url)  # defaults; a jxcbot.toml in the working directory is ignored
    proc = None
    try:
        await recreate_schema(db)
        total = opts.warmup_docs + opts.docs
        log(t0, f"seeding {total} discrepancies in sign-off ({opts.warmup_docs} for the warm-up), 3 approvers each")
        numbers = await seed(db, settings, total)
        warm_numbers, measured = numbers[:opts.warmup_docs], numbers[opts.warmup_docs:]
        await fake.start()
        port = free_port()
        proc = await serve_bot(write_config(Path(opts.workdir) / "jxcbot.toml", opts.url, port, fake), port)
        base = f"http://127.0.0.1:{port}"
        await queue_cards(db, settings, numbers)
        deadline = time.perf_counter() + WAIT_SECONDS
        while sum(m["msgtype"] == "template_card" for m in fake.messages) < len(APPROVERS) * total:
            if time.perf_counter() > deadline:
                raise RuntimeError("the sign-off cards did not all arrive at the fake WeCom")
            await asyncio.sleep(0.05)
        log(t0, f"{len(APPROVERS) * total} cards delivered; encrypting the clicks")
        warm = await asyncio.to_thread(prepare, fake, driver, warm_numbers, 1_800_000_000)
        clicks = await asyncio.to_thread(prepare, fake, driver, measured, 1_900_000_000)
        if warm:
            log(t0, f"warm-up: {len(warm)} clicks at {base}")
            await fire_all(base, warm, opts.senders)
            deadline = time.perf_counter() + WAIT_SECONDS
            while time.perf_counter() < deadline:
                if await posted_count(db) >= len(warm_numbers):
                    break
                await asyncio.sleep(0.05)
        codes = {c.code for c in clicks}
        seen = updates_before = len(fake.updates)
        messages_before = len(fake.messages)
        log(t0, f"bot: {len(clicks)} clicks from {opts.senders} concurrent senders")
        samples, start = await fire_all(base, clicks, opts.senders)
        log(t0, f"bot: acked in {max(s.acked for s in samples) - start:.2f} s; waiting for postings and card updates")
        all_posted = all_updated = None
        updated: set[str] = set()
        deadline = time.perf_counter() + WAIT_SECONDS
        while (all_posted is None or all_updated is None) and time.perf_counter() < deadline:
            updated |= {str(u.get("response_code")) for u in fake.updates[seen:]} & codes
            seen = len(fake.updates)
            now = time.perf_counter()
            if all_updated is None and len(updated) == len(codes):
                all_updated = now
            if all_posted is None and await posted_count(db) >= total:
                all_posted = time.perf_counter()
            await asyncio.sleep(0.02)
    finally:
        log(t0, "stopping the bot (handlers and outbox sender finish first)")
        if proc is not None:
            await stop(proc)
    try:
        checks = await verify(db, numbers)
    finally:
        await db.dispose()

    updates = fake.updates
    assert isinstance(updates, StampedList)
    update_at: dict[str, float] = {}
    for u, at in zip(updates, updates.at, strict=True):
        update_at.setdefault(str(u.get("response_code")), at)
    card_ms = [(update_at[s.click.code] - s.sent) * 1000 for s in samples if s.click.code in update_at]
    ok = [s for s in samples if s.status == 200]
    acks = [s.ack_ms for s in ok]
    acked = max(s.acked for s in samples)
    return {
        "clicks": len(clicks), "warmup_clicks": len(warm), "clicks_list": clicks,
        "clicks_per_s_acked": round(len(ok) / (acked - start), 1),
        "clicks_per_s_until_all_posted": round(len(clicks) / (all_posted - start), 1) if all_posted else None,
        "seconds_acked": round(acked - start, 3),
        "seconds_until_all_posted": round(all_posted - start, 3) if all_posted else None,
        "seconds_until_all_cards_updated": round(all_updated - start, 3) if all_updated else None,
        "click_ack_ms_p50": pct(acks, 50), "click_ack_ms_p99": pct(acks, 99), "click_ack_ms_max": pct(acks, 100),
        "card_update_ms_p50": pct(card_ms, 50), "card_update_ms_p99": pct(card_ms, 99),
        "card_update_ms_max": pct(card_ms, 100),
        "card_updates_seen": len(card_ms), "card_updates_missing": len(clicks) - len(card_ms),
        # what the bot sent the fake for the measured clicks (by the time it stopped): every copy's update or
        # fresh card, and the result notices
        "sent_update_template_card": len(fake.updates) - updates_before,
        "sent_message_send": len(fake.messages) - messages_before,
        "errors": sum(s.status == 0 for s in samples), "non_200": sum(s.status not in (0, 200) for s in samples),
        **checks,
    }


async def yardsticks(opts: Options, fake: FakeWeCom, driver: CallbackDriver, clicks: Sequence[Click],
                     t0: float) -> dict[str, Any]:
    """The same click callbacks, encrypted afresh, against the bare aiohttp handler (median of 3 rounds) and the
    bot's callback route that only stores each event (one round, on a fresh database)."""
    shots = await asyncio.to_thread(lambda: [encrypt(driver, c.shot.user, c.plaintext) for c in clicks])
    warm = await asyncio.to_thread(callback.prepare, driver, [f"warm{i:04d}" for i in range(opts.senders)],
                                   7_400_000_000_000_000_000)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    bare = await spawn(["-m", "bench.bare", str(port), PATH], f"{base}/")
    try:
        async with client_session(opts.senders) as session:
            log(t0, f"bare handler: warm-up, then {BARE_ROUNDS} × {len(shots)} callbacks at {base}")
            await callback.load(session, base, warm, opts.senders)
            rounds = [await callback.load(session, base, shots, opts.senders) for _ in range(BARE_ROUNDS)]
    finally:
        await stop(bare)
    rates = sorted(sum(s.status == 200 for s in ss) / secs for ss, secs in rounds)
    bare_acks = [s.ack_ms for ss, _ in rounds for s in ss if s.status == 200]

    store_opts = callback.Options(opts.url, len(shots), opts.senders, 0, 0.0, True, opts.workdir)
    fresh = await asyncio.to_thread(lambda: [encrypt(driver, c.shot.user, c.plaintext) for c in clicks])
    store_samples, store_seconds = await callback.store_only_phase(store_opts, fake.corp_id, warm, fresh, t0)
    store_ok = [s for s in store_samples if s.status == 200]
    return {
        "bare_per_s": round(rates[len(rates) // 2], 1), "bare_rounds_per_s": [round(r, 1) for r in rates],
        "bare_ack_ms_p50": pct(bare_acks, 50), "bare_ack_ms_p99": pct(bare_acks, 99),
        "bare_errors": sum(s.status != 200 for ss, _ in rounds for s in ss),
        "store_per_s": round(len(store_ok) / store_seconds, 1),
        "store_ack_ms_p50": pct([s.ack_ms for s in store_ok], 50),
        "store_ack_ms_p99": pct([s.ack_ms for s in store_ok], 99),
        "store_errors": len(store_samples) - len(store_ok),
    }


async def run(opts: Options, t0: float) -> dict[str, Any]:
    """The bot phase, then the yardsticks on the same callbacks; the figures and checks as a dict."""
    fake = FakeWeCom(messages=StampedList(), updates=StampedList(), per_user_per_minute=10**9,
                     per_user_per_hour=10**9)
    driver = CallbackDriver(TOKEN, AES_KEY, fake.corp_id, fake.agent_id)
    load_before = os.getloadavg()[0]
    try:
        bot = await bot_phase(opts, fake, driver, t0)
    finally:
        await fake.close()
    clicks = bot.pop("clicks_list")
    sticks = await yardsticks(opts, fake, driver, clicks, t0)
    result: dict[str, Any] = {
        "documents": opts.docs, "warmup_documents": opts.warmup_docs, "senders": opts.senders, **bot, **sticks,
        "ratio": round(bot["clicks_per_s_acked"] / sticks["bare_per_s"], 4) if sticks["bare_per_s"] else None,
        "database": opts.url.split("@")[-1] if opts.url.startswith("postgresql") else "SQLite (fresh file)",
        "database_note": ("fresh SQLite file in a temporary directory, removed after the run"
                          if opts.url.startswith("sqlite") else "schema dropped and recreated before the run"),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # before, after: others' work
        "cpus": os.cpu_count(),
        "servers": "jxcbot serve, the bare handler and the store-only handler each in its own process; "
                   "load client and fake WeCom in the benchmark's process",
    }
    result["problems"] = problems(result)
    return result


def render(r: dict[str, Any]) -> str:
    """The human-readable report."""

    def fig(key: str, fmt: str = ",.1f") -> str:
        return "—" if r.get(key) is None else format(r[key], fmt)

    found = r["problems"]
    return "\n".join([
        f"jxcbot approval-click benchmark: {r['documents']} discrepancies × 3 approvers = {r['clicks']} encrypted "
        f"WeCom card clicks (同意), {r['senders']} concurrent senders, {r['database']}",
        f"  (after {r['warmup_clicks']} warm-up clicks; servers: {r['servers']}; {r['cpus']} CPUs, load average "
        f"{r['load_average_1min'][0]:.2f} before the run, {r['load_average_1min'][1]:.2f} after)",
        "",
        f"  {'':<30}{'p50':>9}{'p99':>9}{'max':>9}",
        f"  {'click ack, ms':<30}{fig('click_ack_ms_p50'):>9}{fig('click_ack_ms_p99'):>9}{fig('click_ack_ms_max'):>9}",
        f"  {'clicker card update, ms':<30}{fig('card_update_ms_p50'):>9}{fig('card_update_ms_p99'):>9}"
        f"{fig('card_update_ms_max'):>9}",
        f"  {'store-only handler ack, ms':<30}{fig('store_ack_ms_p50'):>9}{fig('store_ack_ms_p99'):>9}",
        f"  {'bare handler ack, ms':<30}{fig('bare_ack_ms_p50'):>9}{fig('bare_ack_ms_p99'):>9}",
        "",
        f"  bot, clicks acknowledged      {fig('clicks_per_s_acked'):>9} clicks/s   ({fig('seconds_acked', '.2f')} s)",
        f"  bot, until all posted         {fig('clicks_per_s_until_all_posted'):>9} clicks/s   "
        f"({fig('seconds_until_all_posted', '.2f')} s; every clicker's card updated after "
        f"{fig('seconds_until_all_cards_updated', '.2f')} s)",
        f"  store-only handler            {fig('store_per_s'):>9} callbacks/s",
        f"  bare handler                  {fig('bare_per_s'):>9} callbacks/s   (median of "
        f"{', '.join(f'{x:,.0f}' for x in r['bare_rounds_per_s'])})",
        f"  ratio (acked clicks ÷ bare)   {fig('ratio', '.4f'):>9}",
        f"  checks: {r['approvals_approved']} approvals approved, {r['steps_approved']} steps approved, "
        f"{r['posted_events']} posted events, {r['discrepancy_moves']} discrepancy stock moves, "
        f"{r['card_updates_seen']} of {r['clicks']} clickers' cards updated",
        f"  the bot sent for these clicks: {r['sent_update_template_card']} update_template_card, "
        f"{r['sent_message_send']} message/send",
        "  problems: " + ("; ".join(found) if found else "none (every document posted exactly once)"),
    ])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.approvals", description=__doc__)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout (the table goes to stderr)")
    p.add_argument("--docs", type=int, default=100, help="measured discrepancy documents (default 100)")
    p.add_argument("--warmup-docs", type=int, default=5, help="documents clicked before measuring (default 5)")
    p.add_argument("--senders", type=int, default=30, help="concurrent click senders (default 30)")
    p.add_argument("--database-url", help="run on this PostgreSQL database instead of a fresh SQLite file; its "
                                          "schema is DROPPED and recreated")
    args = p.parse_args(argv)
    if args.docs < 1 or args.senders < 1 or args.warmup_docs < 0:
        p.error("--docs and --senders must be at least 1, --warmup-docs at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="jxcbench-approvals-")
    url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'approvals.db'}"
    try:
        result = asyncio.run(run(Options(url, args.docs, args.warmup_docs, args.senders, tmp), t0))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["elapsed_seconds"] = round(time.perf_counter() - t0, 1)
    emit(render(result) + f"\nTotal wall time {result['elapsed_seconds']:.1f} s", result, args.json)
    if result["problems"]:
        print("bench.approvals: ANOMALY: " + "; ".join(result["problems"]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
