"""Scheduled-jobs benchmark: every registered job over a generated ledger (default 10k products × 1M movements,
--large 100k × 5M), each run once for its period: wall time, peak Python memory (tracemalloc, a second run of the
same period with its claim removed) and the process's resident memory after it; and trend charts rendered per second."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import inspect
import json
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete
from sqlalchemy.engine import make_url

import jobs as _jobs  # noqa: F401  (registers the jobs)
from bench.ledger import (
    MOVE_COLS,
    WAREHOUSES,
    Ledger,
    PgLoader,
    SqliteLoader,
    log,
    seed_small_masters,
    write_balances,
)
from bench.report import emit
from bot.job_wiring import notify_approvers
from cards.parts import split_message
from core.config import Settings
from core.messaging.outbound import Outbound
from core.models import Base, Document, JobRun, User
from core.storage import Database
from core.storage.migrate import recreate_schema
from jobs.registry import JOBS
from jobs.runner import Deps, run_job

TARGET_ALL_S = 60.0
TARGET_CHART_MS = 150.0


def rss_mb() -> float:
    """Resident memory now, in MB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def build(url: str, products: int, movements: int, seed: int, t0: float) -> Ledger:
    """The generated ledger: issues belong to posted sales issues (one per month), receipts to adjustments."""
    ledger = Ledger(products, movements, seed)
    db = Database(url)
    await recreate_schema(db)
    hist = await seed_small_masters(db, ledger)
    async with db.session() as s:
        sales = [Document(number=f"HISTCK{m:03d}", type="sales_issue", status="posted", validation_mode="strict",
                          customer_id=1, created_at=ledger.start + timedelta(days=30 * m),
                          submitted_at=ledger.start + timedelta(days=30 * m),
                          posted_at=ledger.start + timedelta(days=30 * m)) for m in range(len(hist))]
        s.add_all(sales)
        s.add_all([User(name="陈经理", roles="manager", department="运营"),
                   User(name="李采购", roles="purchasing", department="采购部")])
        await s.flush()
        to_sales = {h: d.id for h, d in zip(hist, sales, strict=True)}
        await s.commit()
    await db.dispose()
    ld: SqliteLoader | PgLoader = (SqliteLoader(make_url(url).database) if url.startswith("sqlite")
                                   else await PgLoader.open(url))
    try:
        await ld.insert("products", ("id", "sku", "name", "barcode", "category", "stock_unit", "purchase_unit",
                                     "purchase_factor", "shelf_life_days", "batch_tracked", "lead_time_days",
                                     "buffer_days", "moq", "pack_size", "auto_replenish"), ledger.product_rows(ld))
        await ld.insert("batches", ("id", "product_id", "code"), ((i, i, "") for i in range(1, products + 1)))
        ledger.build_keys(len(WAREHOUSES))
        chunk = 100_000
        while ledger.written < movements:
            rows = ledger.move_rows(min(chunk, movements - ledger.written), hist, ld)
            await ld.insert("stock_moves", MOVE_COLS,
                            [(to_sales[r[0]], *r[1:]) if r[5] < 0 else r for r in rows])
            if ledger.written % 1_000_000 < chunk:
                log(t0, f"movements {ledger.written:,} / {movements:,}")
        await write_balances(ld, ledger)
    finally:
        await ld.close()
    return ledger


def schema_fingerprint() -> str:
    """A digest of the tables, columns and indexes of the models: a kept ledger of another schema is rebuilt."""
    shape = [(t.name, [c.name for c in t.columns], sorted((i.name, [c.name for c in i.columns]) for i in t.indexes))
             for t in Base.metadata.sorted_tables]
    return hashlib.sha256(repr(shape).encode()).hexdigest()[:16]


def kept_ledger(keep: Path, products: int, movements: int, seed: int) -> datetime | None:
    """The end of a ledger built earlier into `keep` for the same sizes, seed and schema, or None (build it)."""
    meta = keep.with_name(keep.name + ".json")
    if not keep.exists() or not meta.exists():
        return None
    m = json.loads(meta.read_text())
    if (m["products"], m["movements"], m["seed"], m.get("schema")) != (products, movements, seed,
                                                                       schema_fingerprint()):
        return None
    return datetime.fromisoformat(m["end"])


async def run(url: str, products: int, movements: int, seed: int, charts: int, t0: float,
              keep: Path | None = None) -> dict[str, Any]:
    """Build the ledger (or copy the one kept in `keep`, SQLite only: the jobs write to it), then run every job."""
    build_start = time.perf_counter()
    end = kept_ledger(keep, products, movements, seed) if keep else None
    if end is None:
        ledger = await build(f"sqlite+aiosqlite:///{keep}" if keep else url, products, movements, seed, t0)
        end = ledger.end
        if keep:
            keep.with_name(keep.name + ".json").write_text(json.dumps(
                {"products": products, "movements": movements, "seed": seed, "end": end.isoformat(),
                 "schema": schema_fingerprint()}))
    if keep:
        log(t0, f"copying the kept ledger {keep}")
        shutil.copyfile(keep, make_url(url).database)
    built = time.perf_counter() - build_start
    db = Database(url)
    settings = Settings(database_url=url)
    outbound = Outbound(split_message, platforms=frozenset({"console"}))  # channels unconfigured: console groups
    now = end + timedelta(minutes=30)
    local = now.astimezone(settings.timezone)
    deps = Deps(db, settings, outbound, owner="bench", clock=lambda: now,
                extras={"notify_approvers": notify_approvers})
    results: dict[str, Any] = {}
    try:
        for name, job in sorted(JOBS.items()):
            log(t0, f"job {name}")
            started = time.perf_counter()
            outcome = await run_job(job, job.period(local), deps)
            seconds = time.perf_counter() - started
            await db.write(lambda session, n=name: session.execute(delete(JobRun).where(JobRun.job == n)))
            tracemalloc.start()  # the same period again (its claim removed): the same work, measured for memory
            again = await run_job(job, job.period(local), deps)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            results[name] = {"seconds": round(seconds, 2), "ok": outcome.ok and again.ok,
                             "result": (outcome.result or "")[:120], "queued": outcome.queued,
                             "peak_python_mb": round(peak / 2**20, 1), "rss_mb_after": round(rss_mb(), 1)}
        chart_ms = await chart_rate(charts)
    finally:
        await db.dispose()
    total = sum(r["seconds"] for r in results.values())
    return {"products": products, "movements": movements, "database": url.split("@")[-1], "build_seconds":
            round(built, 1), "jobs": results, "all_jobs_seconds": round(total, 2), "chart_ms": chart_ms,
            "targets_met": {"all_jobs_under_60_s": total < TARGET_ALL_S,
                            "chart_ms_under_150": chart_ms is not None and chart_ms["median"] <= TARGET_CHART_MS,
                            "every_job_ok": all(r["ok"] for r in results.values())}}


async def chart_rate(n: int) -> dict[str, float] | None:
    """Median and p90 ms of rendering the 30-day trend chart (in a worker thread, as the jobs do)."""
    try:
        from jobs import charts
    except ImportError:
        return None
    render = next((getattr(charts, f) for f in ("trend_chart", "render_trend") if hasattr(charts, f)), None)
    if render is None:
        return None
    sample = getattr(charts, "sample_trend", None)
    args = sample() if callable(sample) else None
    if args is None:
        return None
    times = []
    for _ in range(n):
        started = time.perf_counter()
        await asyncio.to_thread(render, *args) if not inspect.iscoroutinefunction(render) else await render(*args)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"median": round(times[len(times) // 2], 1), "p90": round(times[int(len(times) * 0.9)], 1),
            "per_s": round(1000 / times[len(times) // 2], 1)}


def render(r: dict[str, Any]) -> str:
    lines = [f"jxcbot jobs benchmark: {r['products']:,} products × {r['movements']:,} movements ({r['database']}), "
             f"built in {r['build_seconds']} s",
             f"  {'job':<22}{'seconds':>9}{'peak Python MB':>16}{'RSS after MB':>14}  result"]
    for name, j in r["jobs"].items():
        lines.append(f"  {name:<22}{j['seconds']:>9}{j['peak_python_mb']:>16}{j['rss_mb_after']:>14}  "
                     f"{'ok' if j['ok'] else 'FAILED'}: {j['result']}")
    met = r["targets_met"]
    lines.append(f"  all jobs together {r['all_jobs_seconds']} s   target < {TARGET_ALL_S:g} s: "
                 f"{'met' if met['all_jobs_under_60_s'] else 'MISSED'}")
    c = r["chart_ms"]
    lines.append(f"  trend chart: median {c['median']} ms, p90 {c['p90']} ms ({c['per_s']} charts/s)   target ≤ "
                 f"{TARGET_CHART_MS:g} ms: {'met' if met['chart_ms_under_150'] else 'MISSED'}" if c else
                 "  trend chart: not measured (jobs.charts has no sample)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.jobs", description=__doc__)
    p.add_argument("--json", action="store_true")
    p.add_argument("--large", action="store_true", help="100k products × 5M movements")
    p.add_argument("--products", type=int)
    p.add_argument("--movements", type=int)
    p.add_argument("--charts", type=int, default=20, help="charts rendered for the chart figure (default 20)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--db", help="PostgreSQL URL (schema DROPPED and recreated); default a fresh SQLite file")
    p.add_argument("--keep", type=Path, metavar="PATH",
                   help="SQLite only: build the ledger into PATH once (PATH.json records its sizes) and reuse it on "
                        "later runs of the same sizes and seed; each run works on a copy")
    args = p.parse_args(argv)
    if args.keep and args.db:
        p.error("--keep is for SQLite; leave out --db")
    products = args.products or (100_000 if args.large else 10_000)
    movements = args.movements or (5_000_000 if args.large else 1_000_000)
    t0 = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="jxcbench-jobs-")
    url = args.db or f"sqlite+aiosqlite:///{Path(tmp) / 'jobs.db'}"
    try:
        result = asyncio.run(run(url, products, movements, args.seed, args.charts, t0, args.keep))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    emit(render(result) + f"\nTotal wall time {time.perf_counter() - t0:.1f} s", result, args.json)
    return 0 if result["targets_met"]["every_job_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
