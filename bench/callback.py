"""Callback benchmark: encrypted WeCom stock-query callbacks through the whole bot, against a bare aiohttp handler."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

import aiohttp
import yarl
from aiohttp import web

from bench.bare import bare_app
from bench.report import emit
from bench.store_only import store_only_app
from bot.server import build_app
from core.config import Settings
from core.storage import Database
from core.storage.migrate import recreate_schema

# The fakes live with the tests (the bench runs from the repository root, where `tests` is importable).
from tests.factories import seed_chat_users
from tests.fakes.wecom import CallbackDriver, FakeWeCom
from tests.server_proc import free_port, serve_bot, spawn, stop, write_config

TARGET_ACK_P99 = 100.0  # ms
TARGET_RATIO = 0.40  # callbacks/s of the bot ÷ callbacks/s of the bare handler
TARGET_REPLY_P99 = 300.0  # ms from sending the callback to the reply reaching the fake WeCom
BARE_ROUNDS = 3  # the bare handler gets through the callbacks in well under a second: take the median of 3
TOKEN = "jxcbotBenchToken"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters
QUERY = "库存 奶油"
PATH = "/wecom/callback"
HEADERS = {"Content-Type": "text/xml"}


def log(start: float, message: str) -> None:
    """Progress on stderr with the seconds since start."""
    print(f"[{time.perf_counter() - start:6.1f}s] {message}", file=sys.stderr, flush=True)


def pct(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile, rounded to 0.01 (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)], 2)


def cell(value: float | None, width: int = 9) -> str:
    """A right-aligned figure with one decimal, or a dash for none."""
    return f"{value:>{width}.1f}" if value is not None else f"{'—':>{width}}"


def within(value: float | None, limit: float) -> bool:
    """value <= limit (False when there is no value)."""
    return value is not None and value <= limit


class StampedList(list):  # type: ignore[type-arg]
    """A list that notes time.perf_counter() of every append: the fake's `messages`, stamped on acceptance."""

    def __init__(self) -> None:
        super().__init__()
        self.at: list[float] = []

    def append(self, item: Any) -> None:
        self.at.append(time.perf_counter())
        super().append(item)


@dataclass(frozen=True)
class Shot:
    """One prepared callback: the WeCom user it comes from, its percent-encoded query string and body."""

    user: str
    query: str
    body: bytes


@dataclass(frozen=True)
class Sample:
    """One POST: who sent it, perf_counter at request start and at the full response, HTTP status (0 = failed)."""

    user: str
    sent: float
    acked: float
    status: int

    @property
    def ack_ms(self) -> float:
        return (self.acked - self.sent) * 1000


def prepare(driver: CallbackDriver, users: Sequence[str], first_msg_id: int) -> list[Shot]:
    """Encrypted, signed text callbacks `库存 奶油`, one per user, with distinct MsgIds (blocking: CPU only)."""
    shots = []
    for n, user in enumerate(users):
        params, body = driver.post(driver.text_xml(user, QUERY, msg_id=first_msg_id + n))
        shots.append(Shot(user, "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items()), body))
    return shots


async def fire(session: aiohttp.ClientSession, url: yarl.URL, shot: Shot) -> Sample:
    """POST one callback; the ack is the whole response (status and body) having arrived."""
    sent = time.perf_counter()
    try:
        async with session.post(url, data=shot.body, headers=HEADERS) as r:
            await r.read()
            status = r.status
    except (TimeoutError, aiohttp.ClientError):
        status = 0
    return Sample(shot.user, sent, time.perf_counter(), status)


async def load(session: aiohttp.ClientSession, base: str, shots: Sequence[Shot], senders: int) -> tuple[
        list[Sample], float]:
    """`senders` concurrent tasks, each posting the next unsent callback as soon as its previous one is
    answered; returns the samples and the seconds from the first request to the last answer."""
    urls = [yarl.URL(f"{base}{PATH}?{s.query}", encoded=True) for s in shots]
    work = iter(zip(urls, shots, strict=True))
    samples: list[Sample] = []

    async def sender() -> None:
        for url, shot in work:  # one shared iterator: every callback is sent exactly once
            samples.append(await fire(session, url, shot))

    start = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(senders)))
    return samples, time.perf_counter() - start


def client_session(senders: int) -> aiohttp.ClientSession:
    """One keep-alive connection per sender; WeCom's 5 s deadline as the request timeout."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=senders),
                                 timeout=aiohttp.ClientTimeout(total=5.0))


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    """Run an app on 127.0.0.1 on a free port, as `jxcbot serve` does; returns the runner and base URL."""
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def wait_replies(fake: FakeWeCom, want: int, seconds: float) -> bool:
    """Poll until the fake holds `want` messages (the timestamps come from StampedList, not from here)."""
    deadline = time.perf_counter() + seconds
    while len(fake.messages) < want:
        if time.perf_counter() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def store_only_phase(opts: Options, corp_id: str, warm_shots: Sequence[Shot], shots: Sequence[Shot],
                           t0: float) -> tuple[list[Sample], float]:
    """The same callbacks against the bot's callback route that only stores each event (bench.store_only), on a
    fresh database: what acknowledging costs without handling and replying. One round: a second one would be
    answered by the replay guard."""
    url = opts.url if not opts.url.startswith("sqlite") else f"sqlite+aiosqlite:///{Path(opts.workdir) / 'store.db'}"
    db = Database(url)
    try:
        await recreate_schema(db)
    finally:
        await db.dispose()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    if opts.separate:
        proc = await spawn(["-m", "bench.store_only", str(port), url, corp_id, TOKEN, AES_KEY], f"{base}/")
        runner = None
    else:
        store_db = Database(url)
        runner, base = await serve(store_only_app(store_db, corp_id, TOKEN, AES_KEY))
    samples: list[Sample] = []
    seconds = 0.0
    try:
        async with client_session(opts.senders) as session:
            log(t0, f"store-only handler: warm-up, then {opts.callbacks} callbacks at {base}")
            await load(session, base, warm_shots, opts.senders)
            samples, seconds = await load(session, base, shots, opts.senders)
    finally:
        if runner is not None:
            await runner.cleanup()
        elif (kept := await stop(proc, keep_log=True)) is not None:
            if samples and all(s.status == 200 for s in samples):
                kept.unlink(missing_ok=True)
            else:
                log(t0, f"the store-only handler failed requests; its stderr: {kept}")
    return samples, seconds


@dataclass(frozen=True)
class Options:
    """What to run."""

    url: str
    callbacks: int
    senders: int
    warmup: int
    reply_timeout: float
    separate: bool = True  # servers in their own processes (the load client and fake WeCom stay here)
    workdir: str = "."  # where the server's jxcbot.toml is written
    workers: int = 1  # bot server processes sharing the port (SO_REUSEPORT; PostgreSQL only)


async def run(opts: Options, t0: float) -> dict[str, Any]:
    """Both phases; the figures as a dict."""
    fake = FakeWeCom(messages=StampedList(), per_user_per_minute=10**9)  # its 30/min/user drop would interfere
    driver = CallbackDriver(TOKEN, AES_KEY, fake.corp_id, fake.agent_id)
    warm_users = [f"warm{i:05d}" for i in range(opts.warmup)]
    users = [f"user{i:05d}" for i in range(opts.callbacks)]  # one user per callback: replies pair exactly
    log(t0, f"encrypting {opts.warmup + opts.callbacks} callbacks")
    warm_shots = await asyncio.to_thread(prepare, driver, warm_users, 7_000_000_000_000_000_000)
    shots = await asyncio.to_thread(prepare, driver, users, 7_100_000_000_000_000_000)

    db = Database(opts.url)
    runner: web.AppRunner | None = None
    procs: list[asyncio.subprocess.Process] = []
    server_logs: list[str] = []
    try:
        await recreate_schema(db)
        settings = Settings(database_url=opts.url)  # defaults; a jxcbot.toml in the working directory is ignored
        log(t0, f"seeding {len(warm_users) + len(users)} users, products and stock")
        await seed_chat_users(db, settings, warm_users + users)
        await fake.start()
        raw = {"wecom": {"corp_id": fake.corp_id, "agent_id": fake.agent_id, "secret": fake.secret, "token": TOKEN,
                         "encoding_aes_key": AES_KEY, "api_base": fake.base_url}}
        if opts.separate:
            await db.dispose()
            port = free_port()
            config = write_config(Path(opts.workdir) / "jxcbot.toml", opts.url, port, fake, TOKEN, AES_KEY,
                                  workers=opts.workers)
            base = f"http://127.0.0.1:{port}"
            procs = [await serve_bot(config, port) for _ in range(opts.workers)]
        else:
            runner, base = await serve(build_app(replace(settings, raw=MappingProxyType(raw)), db))
        async with client_session(opts.senders) as session:
            log(t0, f"warm-up: {opts.warmup} callbacks to the bot at {base}")
            await load(session, base, warm_shots, opts.senders)
            if not await wait_replies(fake, opts.warmup, opts.reply_timeout):
                raise RuntimeError(f"warm-up: only {len(fake.messages)} of {opts.warmup} replies arrived")
            skip = len(fake.messages)
            log(t0, f"bot: {opts.callbacks} callbacks from {opts.senders} concurrent senders")
            samples, seconds = await load(session, base, shots, opts.senders)
            log(t0, f"bot: acked in {seconds:.2f} s; waiting for the replies")
            ok = sum(1 for s in samples if s.status == 200)
            complete = await wait_replies(fake, skip + ok, opts.reply_timeout)
    finally:
        log(t0, "stopping the bot (handlers and outbox sender finish first)")
        if runner is not None:
            await runner.cleanup()
        kept = await asyncio.gather(*(stop(p, keep_log=True) for p in procs))
        server_logs = [str(p) for p in kept if p is not None]
        await fake.close()
        await db.dispose()

    stamps: dict[str, float] = {}
    assert isinstance(fake.messages, StampedList)
    for msg, at in zip(fake.messages[skip:], fake.messages.at[skip:], strict=True):
        stamps.setdefault(str(msg.get("touser")), at)
    replies = [(stamps[s.user] - s.sent) * 1000 for s in samples if s.status == 200 and s.user in stamps]
    wrong = [m for m in fake.messages[skip:] if "淡奶油" not in json.dumps(m, ensure_ascii=False)]
    last_ack = max(s.acked for s in samples)

    # Encrypted afresh: the first ones may be older than the callback timestamp window by now.
    store_warm = await asyncio.to_thread(prepare, driver, warm_users, 7_200_000_000_000_000_000)
    store_shots = await asyncio.to_thread(prepare, driver, users, 7_300_000_000_000_000_000)
    store_samples, store_seconds = await store_only_phase(opts, fake.corp_id, store_warm, store_shots, t0)

    bare_runner: web.AppRunner | None = None
    bare_proc: asyncio.subprocess.Process | None = None
    if opts.separate:
        bare_port = free_port()
        bare_base = f"http://127.0.0.1:{bare_port}"
        bare_proc = await spawn(["-m", "bench.bare", str(bare_port), PATH], f"{bare_base}/")
    else:
        bare_runner, bare_base = await serve(bare_app(PATH))
    try:
        async with client_session(opts.senders) as session:
            log(t0, f"bare handler: warm-up, then {BARE_ROUNDS} × {opts.callbacks} callbacks at {bare_base}")
            await load(session, bare_base, warm_shots, opts.senders)
            bare_runs = [await load(session, bare_base, shots, opts.senders) for _ in range(BARE_ROUNDS)]
    finally:
        if bare_runner is not None:
            await bare_runner.cleanup()
        if bare_proc is not None:
            await stop(bare_proc)

    acks = [s.ack_ms for s in samples if s.status == 200]
    store_ok = [s for s in store_samples if s.status == 200]
    store_rate = len(store_ok) / store_seconds
    bare_samples = [s for run_samples, _ in bare_runs for s in run_samples]
    bare_acks = [s.ack_ms for s in bare_samples if s.status == 200]
    bare_rates = sorted(sum(1 for s in ss if s.status == 200) / secs for ss, secs in bare_runs)
    rate = ok / seconds
    bare_rate = bare_rates[len(bare_rates) // 2]  # the median round: one round of the bare handler is short
    result: dict[str, Any] = {
        "ack_ms_p50": pct(acks, 50),
        "ack_ms_p99": pct(acks, 99),
        "callbacks_per_s": round(rate, 1),
        "bare_per_s": round(bare_rate, 1),
        "ratio": round(rate / bare_rate, 3) if bare_rate else None,
        "reply_ms_p99": pct(replies, 99),
        "ack_ms_max": pct(acks, 100),
        "reply_ms_p50": pct(replies, 50),
        "reply_ms_max": pct(replies, 100),
        "reply_drain_ms": round((max(stamps.values()) - last_ack) * 1000, 1) if stamps else None,
        "store_per_s": round(store_rate, 1),
        "ratio_to_store": round(rate / store_rate, 3) if store_rate else None,
        "store_ack_ms_p50": pct([s.ack_ms for s in store_ok], 50),
        "store_ack_ms_p99": pct([s.ack_ms for s in store_ok], 99),
        "store_errors": len(store_samples) - len(store_ok),
        "bare_ack_ms_p50": pct(bare_acks, 50),
        "bare_ack_ms_p99": pct(bare_acks, 99),
        "senders": opts.senders,
        "callbacks": opts.callbacks,
        "warmup_callbacks": opts.warmup,
        "seconds": round(seconds, 3),
        "bare_rounds_per_s": [round(r, 1) for r in bare_rates],
        "errors": sum(1 for s in samples if s.status == 0),
        "non_200": sum(1 for s in samples if s.status not in (0, 200)),
        "bare_errors": sum(1 for s in bare_samples if s.status == 0),
        "bare_non_200": sum(1 for s in bare_samples if s.status not in (0, 200)),
        "replies": len(replies),
        "replies_missing": ok - len(replies),
        "replies_complete": complete,
        "replies_without_stock": len(wrong),
        "dropped_at_fake": len(fake.dropped),
        "users": len(users) + len(warm_users),
        "database": opts.url,
        "database_note": ("fresh SQLite file in a temporary directory, removed after the run"
                          if opts.url.startswith("sqlite") else "schema dropped and recreated before the run"),
        "workers": opts.workers,
        "server_logs": server_logs,
        "servers": "own processes (jxcbot serve; a bare aiohttp app)" if opts.separate else "in the client's process",
    }
    result["targets_met"] = {
        "ack_ms_p99": within(result["ack_ms_p99"], TARGET_ACK_P99),
        "ratio": result["ratio"] is not None and result["ratio"] >= TARGET_RATIO,
        "reply_ms_p99": within(result["reply_ms_p99"], TARGET_REPLY_P99) and result["replies_missing"] == 0,
    }
    return result


def problems(r: dict[str, Any]) -> list[str]:
    """What went wrong in the run (empty when nothing did)."""
    return [f"{r[k]} {label}" for k, label in (
        ("errors", "failed requests"), ("non_200", "non-200 answers"), ("replies_missing", "replies missing"),
        ("replies_without_stock", "replies without the stock"), ("dropped_at_fake", "dropped at the fake"),
        ("bare_errors", "bare failed requests"), ("bare_non_200", "bare non-200 answers"),
        ("store_errors", "store-only failed or non-200")) if r[k]]


def render(r: dict[str, Any]) -> str:
    """The human-readable report."""
    ok = r["targets_met"]

    def mark(key: str) -> str:
        return "met" if ok[key] else "MISSED"

    found = problems(r)
    return "\n".join([
        f"jxcbot callback benchmark: {r['callbacks']:,} encrypted WeCom text callbacks 「{QUERY}」, "
        f"{r['senders']} concurrent senders, loopback",
        f"  (after {r['warmup_callbacks']} warm-up callbacks; one registered user per callback; "
        f"servers: {r['servers']}; load client and fake WeCom in this process)",
        "",
        f"  {'':<28}{'p50':>9}{'p99':>9}{'max':>9}",
        f"  {'ack latency, ms':<28}{cell(r['ack_ms_p50'])}{cell(r['ack_ms_p99'])}{cell(r['ack_ms_max'])}"
        f"   target p99 <= {TARGET_ACK_P99:g}: {mark('ack_ms_p99')}",
        f"  {'reply at the fake, ms':<28}{cell(r['reply_ms_p50'])}{cell(r['reply_ms_p99'])}{cell(r['reply_ms_max'])}"
        f"   target p99 <= {TARGET_REPLY_P99:g}: {mark('reply_ms_p99')}",
        f"  {'store-only handler ack, ms':<28}{cell(r['store_ack_ms_p50'])}{cell(r['store_ack_ms_p99'])}",
        f"  {'bare handler ack, ms':<28}{cell(r['bare_ack_ms_p50'])}{cell(r['bare_ack_ms_p99'])}",
        "",
        f"  bot            {r['callbacks_per_s']:>9,.0f} callbacks/s   ({r['seconds']:.2f} s)",
        f"  bare handler   {r['bare_per_s']:>9,.0f} callbacks/s   (median of "
        f"{', '.join(f'{x:,.0f}' for x in r['bare_rounds_per_s'])})",
        f"  store-only     {r['store_per_s']:>9,.0f} callbacks/s   (verify + decrypt + parse + store, no handling)",
        f"  ratio          {r['ratio'] or 0:>9.3f}                 target >= {TARGET_RATIO:g}: {mark('ratio')}",
        f"  ratio to the store-only handler: {r['ratio_to_store'] or 0:.3f} (for information; no target)",
        *([f"  (the bot ran as {r['workers']} processes, each yardstick as one: the ratios are not like for like)"]
          if r["workers"] > 1 else []),
        f"  replies: {r['replies']:,} received, the last {cell(r['reply_drain_ms'], 0)} ms after the last ack",
        "  problems: " + ("; ".join(found) + "".join(f"; the bot's stderr: {p}" for p in r["server_logs"])
                          if found else "none"),
        f"targets_met: {all(ok.values())}",
    ])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.callback", description=__doc__)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout (the table goes to stderr)")
    p.add_argument("--callbacks", type=int, default=2000, help="measured callbacks (default 2000)")
    p.add_argument("--senders", type=int, default=100, help="concurrent senders (default 100)")
    p.add_argument("--warmup", type=int, help="warm-up callbacks before measuring (default: one per sender)")
    p.add_argument("--in-process", action="store_true",
                   help="run the bot and the bare handler inside this process (default: each in its own process, "
                        "so the load client and the fake WeCom do not share its interpreter)")
    p.add_argument("--reply-timeout", type=float, default=30.0,
                   help="seconds to wait for the replies after the last ack (default 30)")
    p.add_argument("--database-url", help="run the bot on this database instead of a fresh SQLite file; its schema is "
                                          "DROPPED and recreated (e.g. postgresql+asyncpg://postgres@127.0.0.1/jxcbench)")
    p.add_argument("--workers", type=int, default=1,
                   help="bot server processes sharing the port (SO_REUSEPORT; needs --database-url on PostgreSQL)")
    args = p.parse_args(argv)
    if args.workers < 1 or (args.workers > 1 and (args.in_process or not (args.database_url or "").startswith(
            "postgresql"))):
        p.error("--workers above 1 needs --database-url on PostgreSQL and separate processes")
    if args.callbacks < 1 or args.senders < 1 or (args.warmup is not None and args.warmup < 0):
        p.error("--callbacks and --senders must be at least 1, --warmup at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    tmpdir = tempfile.mkdtemp(prefix="jxcbench-")
    url = args.database_url or f"sqlite+aiosqlite:///{Path(tmpdir) / 'callback.db'}"
    opts = Options(url, args.callbacks, args.senders, args.senders if args.warmup is None else args.warmup,
                   args.reply_timeout, not args.in_process, tmpdir, args.workers)
    try:
        result = asyncio.run(run(opts, t0))
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    result["elapsed_seconds"] = round(time.perf_counter() - t0, 1)
    if not problems(result):  # the bot's stderr is kept only when something went wrong
        for name in result["server_logs"]:
            Path(name).unlink(missing_ok=True)
    table = render(result) + f"\nTotal wall time {result['elapsed_seconds']:.1f} s"
    emit(table, result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
