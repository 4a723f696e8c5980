"""DingTalk Stream soak: `jxcbot serve` (127.0.0.1, no public URL) fed over the fake Stream gateway, which cuts it."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
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
from tests.fakes.dingtalk_stream import FakeDingTalkStream, Pending
from tests.server_proc import free_port, log_text, serve_bot, stop
from tests.waiting import until

QUERY = "库存 奶油"
STAFF = "manager01"
SETTLE_SECONDS = 120.0  # after the last message: for every ack and every reply


def write_config(path: Path, url: str, port: int, fake: FakeDingTalkStream) -> str:
    """A jxcbot.toml: the database, 127.0.0.1:port, and [dingtalk] without public_url (Stream mode)."""
    lines = ["[database]", f"url = {json.dumps(url)}", "[server]", 'host = "127.0.0.1"', f"port = {port}",
             "[dingtalk]", f"app_key = {json.dumps(fake.app_key)}", f"app_secret = {json.dumps(fake.app_secret)}",
             f"robot_code = {json.dumps(fake.robot_code)}", f"api_base = {json.dumps(fake.url)}",
             f"oapi_base = {json.dumps(fake.url)}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


async def prepare(url: str) -> None:
    """A fresh schema with the stocked demo and 王经理 (DingTalk staff id manager01)."""
    db = Database(url)
    settings = load_config(None, env={})
    try:
        await recreate_schema(db)

        async def work(s: Any) -> None:
            await seed_stocked(s, settings)
            s.add(User(name="王经理", dingtalk_staff_id=STAFF, roles="manager"))

        await db.write(work)
    finally:
        await db.dispose()


def tracebacks(text: str) -> tuple[list[str], list[str]]:
    """The server log's tracebacks: (the stream's and the rest of the bot's, the scheduled jobs'). The soak
    configures no [channels] for the jobs' reports, so they fail as in any such setup; they are counted apart."""
    bot, jobs = [], []
    chunks = text.split("Traceback (most recent call last):")
    for before, chunk in itertools.pairwise(chunks):
        lines = before.rstrip().splitlines()
        body = "Traceback (most recent call last):" + chunk
        of_job = (lines and lines[-1].startswith("job ")) or "/jobs/" in chunk.split("\n\n")[0]
        (jobs if of_job else bot).append(body)
    return bot, jobs


def reconnect_gaps(fake: FakeDingTalkStream) -> list[float]:
    """Seconds from each cut to the next connection opened after it."""
    conns = fake.stream.connections
    gaps = []
    for c in conns:
        if c.how == "cut" and c.closed_at is not None:
            later = [d.opened_at for d in conns if d.opened_at >= c.closed_at]
            if later:
                gaps.append(min(later) - c.closed_at)
    return gaps


async def soak(url: str, seconds: float, messages: int, cut_every: float, instances: int,
               ack_timeout: float) -> dict[str, Any]:
    """Send `messages` robot messages evenly over `seconds` through the gateway while it cuts every connection
    every `cut_every` s; wait for every ack and reply; the figures."""
    start = time.perf_counter()
    await prepare(url)
    async with FakeDingTalkStream(ack_timeout=ack_timeout) as fake:
        fake.sent = StampedList()
        with tempfile.TemporaryDirectory(prefix="jxcbot-stream-") as tmp:
            procs = []
            try:
                for i in range(instances):
                    port = free_port()
                    procs.append(await serve_bot(write_config(Path(tmp) / f"jxcbot{i}.toml", url, port, fake), port))
                await until(lambda: len(fake.stream.live()) >= instances, "the servers' stream connections", 30)
                log(start, f"{instances} server(s) connected; sending {messages} messages over {seconds:.0f} s, "
                           f"a cut every {cut_every:.0f} s")
                cutter = fake.stream.cut_every(cut_every) if cut_every > 0 else None
                pushed: dict[str, tuple[float, Pending]] = {}  # session id → (perf_counter at push, pending)
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                for i in range(messages):
                    await asyncio.sleep(max(0.0, t0 + i * seconds / messages - loop.time()))
                    payload = fake.text_message(QUERY, staff_id=STAFF, msg_id=f"soak-{i}")
                    session = payload["sessionWebhook"].rsplit("=", 1)[1]
                    pushed[session] = (time.perf_counter(), fake.stream.message(payload))
                sent_for = loop.time() - t0
                if cutter is not None:
                    cutter.cancel()
                log(start, f"sent in {sent_for:.1f} s; waiting for acks and replies")
                settle = time.monotonic() + SETTLE_SECONDS
                while time.monotonic() < settle:
                    answered = {s.address for s in fake.sent if s.channel == "session"}
                    if len(answered) >= messages and all(p.acked.is_set() for _, p in pushed.values()):
                        break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(1.0)  # a duplicate reply would show up now
                drained = time.perf_counter()
            finally:
                logs = [log_text(p) for p in procs]
                for p in procs:
                    await stop(p)
        errors = [e for text in logs for e in tracebacks(text)[0]]
        job_errors = sum(len(tracebacks(text)[1]) for text in logs)
        if errors:
            print("the server's first traceback:\n" + errors[0][:3000], file=sys.stderr)
        per_session = Counter(s.address for s in fake.sent if s.channel == "session")
        first_reply: dict[str, float] = {}
        for at, s in zip(fake.sent.at, fake.sent, strict=True):
            if s.channel == "session":
                first_reply.setdefault(s.address, at)
        pendings = [p for _, p in pushed.values()]
        reply_ms = [(first_reply[k] - t) * 1000 for k, (t, _) in pushed.items() if k in first_reply]
        ack_ms = [(p.acked_at - p.pushed_at) * 1000 for p in pendings if p.acked_at is not None]
        gaps = reconnect_gaps(fake)
        return {
            "database": url.split(":", 1)[0], "instances": instances, "messages": messages,
            "seconds": seconds, "sent_seconds": round(sent_for, 1), "cut_every": cut_every,
            "ack_timeout": ack_timeout,
            "answered_once": sum(1 for k in pushed if per_session.get(k) == 1),
            "answered_twice_or_more": sum(1 for k in pushed if per_session.get(k, 0) > 1),
            "unanswered": sum(1 for k in pushed if k not in per_session),
            "unacked": sum(1 for p in pendings if not p.acked.is_set()),
            "redeliveries": sum(p.attempts - 1 for p in pendings),
            "cuts": sum(1 for c in fake.stream.connections if c.how == "cut"),
            "connections": len(fake.stream.connections), "tickets": len(fake.stream.opens),
            "refused_tickets": fake.stream.refused_tickets, "bad_frames": len(fake.stream.bad_frames),
            "reconnect_s_p50": pct(gaps, 50), "reconnect_s_max": round(max(gaps), 2) if gaps else None,
            "ack_ms_p50": pct(ack_ms, 50), "ack_ms_p99": pct(ack_ms, 99),
            "reply_ms_p50": pct(reply_ms, 50), "reply_ms_p99": pct(reply_ms, 99),
            "elapsed_s": round(drained - start, 1),
            "server_errors": len(errors), "job_errors": job_errors,
        }


def table(r: dict[str, Any]) -> str:
    rows = [
        ("database / instances", f"{r['database']} / {r['instances']}"),
        ("messages sent (s)", f"{r['messages']} in {r['sent_seconds']} s, a cut every {r['cut_every']:.0f} s"),
        ("answered exactly once", f"{r['answered_once']} (twice or more {r['answered_twice_or_more']}, "
                                  f"none {r['unanswered']}, unacknowledged {r['unacked']})"),
        ("cuts / connections / tickets", f"{r['cuts']} / {r['connections']} / {r['tickets']}"),
        ("redeliveries (ack timeout)", f"{r['redeliveries']} ({r['ack_timeout']:.0f} s)"),
        ("reconnect after a cut p50 / max", f"{r['reconnect_s_p50']} / {r['reconnect_s_max']} s"),
        ("ack ms p50 / p99", f"{r['ack_ms_p50']} / {r['ack_ms_p99']}"),
        ("reply ms p50 / p99", f"{r['reply_ms_p50']} / {r['reply_ms_p99']}"),
        ("server tracebacks (scheduled jobs')", f"{r['server_errors']} ({r['job_errors']})"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def ok(r: dict[str, Any]) -> bool:
    """Every message answered exactly once and acknowledged, the gateway saw only valid frames, the server
    logged no traceback."""
    return (r["answered_once"] == r["messages"] and r["unacked"] == 0 and r["bad_frames"] == 0
            and r["refused_tickets"] == 0 and r["server_errors"] == 0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dingtalk_stream", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="spread the messages over this long")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--cut-every", type=float, default=15.0, help="cut every connection this often (0: never)")
    parser.add_argument("--instances", type=int, default=1, help="jxcbot serve processes, each with a connection")
    parser.add_argument("--ack-timeout", type=float, default=5.0, help="the gateway redelivers after this long")
    parser.add_argument("--url", help="database URL (default: a fresh SQLite file; PostgreSQL is recreated)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    tmp = None
    url = args.url
    if url is None:
        tmp = tempfile.mkdtemp(prefix="jxcbot-soak-db-")
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'soak.db'}"
    try:
        result = asyncio.run(soak(url, args.seconds, args.messages, args.cut_every, args.instances,
                                  args.ack_timeout))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    emit(table(result), result, args.json)
    if not ok(result):
        print("FAILED: not every message was answered exactly once and acknowledged, or the gateway saw bad "
              "frames or tickets, or the server logged a traceback outside the scheduled jobs", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
