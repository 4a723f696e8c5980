"""WeCom intelligent robot soak: `jxcbot serve` (127.0.0.1, no public URL) fed over the fake long connection,
which cuts it every so often; every message must be answered exactly once."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.callback import StampedList, log, pct
from bench.report import emit
from core.config import load_config
from core.models import User
from core.storage import Database
from core.storage.migrate import recreate_schema

# The fakes live with the tests (the bench runs from the repository root, where `tests` is importable).
from tests.factories import seed_stocked
from tests.fakes.wecom_longconn import FakeLongConn
from tests.server_proc import free_port, log_text, serve_bot, stop
from tests.waiting import until

# A stock query that reads the products and warehouses and answers with the token (找不到仓库「Q00042」…), so that
# every reply — on its callback or pushed after a cut — names the message it answers.
QUERY = "库存 奶油 Q{n:05d}"
TOKEN = re.compile(r"Q\d{5}")
SETTLE_SECONDS = 120.0  # after the last message: for every reply


def write_config(path: Path, url: str, port: int, fake: FakeLongConn) -> str:
    """A jxcbot.toml: the database, 127.0.0.1:port, and [wecom] mode = "longconn" on the fake."""
    lines = ["[database]", f"url = {json.dumps(url)}", "[server]", 'host = "127.0.0.1"', f"port = {port}",
             "[wecom]", 'mode = "longconn"', f"bot_id = {json.dumps(fake.bot_id)}",
             f"secret = {json.dumps(fake.secret)}", f"ws_url = {json.dumps(fake.url)}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


async def prepare(url: str, users: int) -> list[str]:
    """A fresh schema with the stocked demo and `users` registered WeCom users; their userids."""
    db = Database(url)
    settings = load_config(None, env={})
    ids = [f"soak{n:03d}" for n in range(users)]
    try:
        await recreate_schema(db)

        async def work(s: Any) -> None:
            await seed_stocked(s, settings)
            s.add_all(User(name=f"用户{u}", wecom_user_id=u, roles="warehouse") for u in ids)

        await db.write(work)
    finally:
        await db.dispose()
    return ids


def tracebacks(text: str) -> list[str]:
    """The server log's tracebacks, except those of scheduled jobs (the soak configures no [channels])."""
    out = []
    chunks = text.split("Traceback (most recent call last):")
    for before, chunk in itertools.pairwise(chunks):
        lines = before.rstrip().splitlines()
        if not (lines and lines[-1].startswith("job ")):
            out.append("Traceback (most recent call last):" + chunk)
    return out


def reconnect_gaps(fake: FakeLongConn) -> list[float]:
    """Seconds from each cut to the next subscription after it."""
    subscribed = sorted(c.subscribed_at for c in fake.connections if c.subscribed_at is not None)
    gaps = []
    for c in fake.connections:
        if c.how == "cut" and c.closed_at is not None:
            later = [t for t in subscribed if t >= c.closed_at]
            if later:
                gaps.append(later[0] - c.closed_at)
    return gaps


async def soak(url: str, seconds: float, messages: int, cut_every: float, users: int) -> dict[str, Any]:
    """Send `messages` texts evenly over `seconds` (round robin over `users`) while the fake cuts the connection
    every `cut_every` s; wait for every reply; the figures."""
    start = time.perf_counter()
    ids = await prepare(url, users)
    async with FakeLongConn() as fake:
        fake.replies = StampedList()
        with tempfile.TemporaryDirectory(prefix="jxcbot-longconn-") as tmp:
            proc = None
            try:
                port = free_port()
                proc = await serve_bot(write_config(Path(tmp) / "jxcbot.toml", url, port, fake), port)
                await until(lambda: fake.active is not None, "the server's long connection", 30)
                log(start, f"connected; sending {messages} messages over {seconds:.0f} s, a cut every "
                           f"{cut_every:.0f} s")
                cutter = fake.cut_every(cut_every) if cut_every > 0 else None
                sent_at: dict[str, float] = {}  # token → perf_counter when the fake had it
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                for n in range(messages):
                    await asyncio.sleep(max(0.0, t0 + n * seconds / messages - loop.time()))
                    text = QUERY.format(n=n)
                    sent_at[TOKEN.search(text).group()] = time.perf_counter()  # type: ignore[union-attr]
                    await fake.send_text(ids[n % len(ids)], text)
                sent_for = loop.time() - t0
                if cutter is not None:
                    cutter.cancel()
                log(start, f"sent in {sent_for:.1f} s; waiting for the replies")

                def answered() -> set[str]:
                    return {m.group() for r in fake.replies if r.via != "update" and (m := TOKEN.search(r.text))}

                try:
                    await until(lambda: len(answered()) >= messages, "every reply", SETTLE_SECONDS, 0.2)
                except AssertionError:
                    log(start, f"{messages - len(answered())} messages unanswered after {SETTLE_SECONDS:.0f} s")
                await asyncio.sleep(2.0)  # a duplicate reply would show up now
                drained = time.perf_counter()
            finally:
                text = log_text(proc) if proc is not None else ""
                if proc is not None:
                    await stop(proc)
        errors = tracebacks(text)
        if errors:
            print("the server's first traceback:\n" + errors[0][:3000], file=sys.stderr)
        per_token: Counter[str] = Counter()
        first: dict[str, float] = {}
        vias: Counter[str] = Counter()
        for at, r in zip(fake.replies.at, fake.replies, strict=True):
            m = TOKEN.search(r.text)
            if r.via == "update" or m is None:
                continue
            per_token[m.group()] += 1
            first.setdefault(m.group(), at)
            vias[r.via] += 1
        reply_ms = [(first[k] - t) * 1000 for k, t in sent_at.items() if k in first]
        gaps = reconnect_gaps(fake)
        return {
            "database": url.split(":", 1)[0], "messages": messages, "users": users, "seconds": seconds,
            "sent_seconds": round(sent_for, 1), "cut_every": cut_every,
            "answered_once": sum(1 for k in sent_at if per_token.get(k) == 1),
            "answered_twice_or_more": sum(1 for k in sent_at if per_token.get(k, 0) > 1),
            "unanswered": sum(1 for k in sent_at if k not in per_token),
            "on_callback": vias["respond"], "pushed": vias["push"],
            "redeliveries": sum(max(0, cb.deliveries - 1) for cb in fake.callbacks.values()),
            "cuts": sum(1 for c in fake.connections if c.how == "cut"),
            "connections": len(fake.connections), "subscriptions": fake.subscriptions,
            "refused_frames": len(fake.errors),
            "reconnect_s_p50": pct(gaps, 50), "reconnect_s_max": round(max(gaps), 2) if gaps else None,
            "reply_ms_p50": pct(reply_ms, 50), "reply_ms_p99": pct(reply_ms, 99),
            "elapsed_s": round(drained - start, 1), "server_errors": len(errors),
        }


def table(r: dict[str, Any]) -> str:
    rows = [
        ("database / users", f"{r['database']} / {r['users']}"),
        ("messages sent (s)", f"{r['messages']} in {r['sent_seconds']} s, a cut every {r['cut_every']:.0f} s"),
        ("answered exactly once", f"{r['answered_once']} (twice or more {r['answered_twice_or_more']}, "
                                  f"none {r['unanswered']})"),
        ("on the callback / pushed", f"{r['on_callback']} / {r['pushed']}"),
        ("cuts / connections / subscriptions", f"{r['cuts']} / {r['connections']} / {r['subscriptions']}"),
        ("callbacks delivered again", str(r["redeliveries"])),
        ("reconnect after a cut p50 / max", f"{r['reconnect_s_p50']} / {r['reconnect_s_max']} s"),
        ("reply ms p50 / p99", f"{r['reply_ms_p50']} / {r['reply_ms_p99']}"),
        ("frames refused by the fake", str(r["refused_frames"])),
        ("server tracebacks (jobs aside)", str(r["server_errors"])),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def ok(r: dict[str, Any]) -> bool:
    """Every message answered exactly once, no frame refused, no traceback in the server's log."""
    return r["answered_once"] == r["messages"] and r["refused_frames"] == 0 and r["server_errors"] == 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wecom_longconn", description=__doc__)
    parser.add_argument("--seconds", type=float, default=120.0, help="spread the messages over this long")
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--cut-every", type=float, default=15.0, help="cut the connection this often (0: never)")
    parser.add_argument("--users", type=int, default=50, help="registered WeCom users the messages come from")
    parser.add_argument("--url", help="database URL (default: a fresh SQLite file; PostgreSQL is recreated)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    tmp = None
    url = args.url
    if url is None:
        tmp = tempfile.mkdtemp(prefix="jxcbot-soak-db-")
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'soak.db'}"
    try:
        result = asyncio.run(soak(url, args.seconds, args.messages, args.cut_every, args.users))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    emit(table(result), result, args.json)
    if not ok(result):
        print("FAILED: not every message was answered exactly once", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
