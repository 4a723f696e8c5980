"""Ledger benchmark: posting throughput against the raw-driver floor, and stock-query latency as movements grow.

With --variants: what each part of the SQLite speed code (core/storage/) buys, every variant measured in the
same run, in rounds."""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.engine import make_url

from bench.report import emit
from core.config import Settings
from core.ledger.documents import LineInput, create_document, get_document, post_document, submit_document
from core.ledger.stock import current_stock, stock_lookup
from core.models import Customer, Document, StockMove, Supplier, Warehouse
from core.storage import Database
from core.storage.database import SPEED_PARTS
from core.storage.migrate import recreate_schema
from core.storage.sqlite_driver import OneHopConnection
from core.types import SCALE

UNIT = 10**SCALE  # one stock unit in the ledger's scaled integers
HALF = UNIT // 2
TARGET_POST = 3000.0
TARGET_P50 = 2.0
TARGET_P99 = 10.0
TARGET_GROWTH = 1.5
HISTORY_DOCS = 12  # one dummy posted document per month of history
MOVE_COLS = ("document_id", "product_id", "warehouse_id", "batch_id", "bucket", "qty", "balance_after", "posted_at")
RAW_COLS = ("document_id", "line_id", "product_id", "warehouse_id", "batch_id", "bucket", "qty", "balance_after",
            "reversal_of_id", "posted_at")
BALANCE_COLS = ("product_id", "warehouse_id", "batch_id", "qty", "on_loan", "max_move", "move_count", "updated_at")

# (name, stock unit, purchase unit, factor, half units allowed); no name is a substring of another.
BASES = (
    ("淡奶油", "瓶", "箱", 12, False), ("高筋面粉", "kg", "袋", 25, True), ("低筋面粉", "kg", "袋", 25, True),
    ("白砂糖", "kg", "袋", 25, True), ("黄油", "kg", "箱", 10, True), ("鸡蛋", "个", "箱", 360, False),
    ("牛奶", "瓶", "箱", 24, False), ("可可粉", "kg", "袋", 5, True), ("抹茶粉", "kg", "袋", 1, True),
    ("芝士", "kg", "箱", 8, True), ("酵母", "包", "箱", 20, False), ("杏仁片", "kg", "袋", 10, True),
    ("蔓越莓干", "kg", "袋", 5, True), ("巧克力豆", "kg", "袋", 10, True), ("椰浆", "罐", "箱", 24, False),
    ("炼乳", "罐", "箱", 48, False), ("蜂蜜", "瓶", "箱", 12, False), ("香草精", "瓶", "箱", 6, False),
    ("吉利丁片", "盒", "箱", 20, False), ("草莓果酱", "瓶", "箱", 12, False),
)
WAREHOUSES = (
    ("WH01", "中央仓", False), ("WH02", "冷链仓", False), ("WH03", "华东仓", False), ("S01", "一号门店", False),
    ("S02", "二号门店", False), ("S03", "三号门店", False), ("S04", "四号门店", False), ("S05", "五号门店", False),
    ("S06", "六号门店", False), ("S07", "七号门店", False), ("S08", "八号门店", False), ("S09", "九号门店", True),
    ("S10", "十号门店", True),
)


def log(start: float, message: str) -> None:
    """Progress on stderr with the seconds since start."""
    print(f"[{time.perf_counter() - start:7.1f}s] {message}", file=sys.stderr, flush=True)


def human(n: int) -> str:
    """10000 → 10k, 1000000 → 1M."""
    for div, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= div and n % (div // 10) == 0:
            return f"{n / div:g}{suffix}"
    return f"{n:,}"


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def sqlite_ts(moment: datetime) -> str:
    """A UTC datetime in SQLAlchemy's SQLite storage format."""
    return f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond:06d}"


# ---------------------------------------------------------------------------------------------------------------
# Raw loaders: stdlib sqlite3 executemany or asyncpg COPY, with the values each backend stores.


class SqliteLoader:
    """Bulk loads through stdlib sqlite3; Dec columns take value × 10^6 integers, datetimes their text form."""

    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=OFF", "cache_size=-262144", "temp_store=MEMORY"):
            self.conn.execute(f"PRAGMA {pragma}")

    @staticmethod
    def dec(micro: int) -> Any:
        return micro

    @staticmethod
    def ts(moment: datetime) -> Any:
        return sqlite_ts(moment)

    @staticmethod
    def flag(value: bool) -> Any:
        return int(value)

    async def insert(self, table: str, cols: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        self.conn.execute("BEGIN")
        self.conn.executemany(sql, rows)
        self.conn.execute("COMMIT")

    async def execute(self, sql: str) -> None:
        self.conn.execute(sql)

    async def finish_phase(self) -> None:
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def close(self) -> None:
        self.conn.close()


class PgLoader:
    """Bulk loads through asyncpg COPY; Dec columns take Decimal, datetimes stay aware."""

    dialect = "postgresql"

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    @classmethod
    async def open(cls, url: str) -> PgLoader:
        import asyncpg

        conn = await asyncpg.connect(pg_dsn(url))
        try:  # skip the per-row foreign-key triggers during the bulk load (the generated rows are consistent)
            await conn.execute("SET session_replication_role = replica")
        except asyncpg.PostgresError:
            pass
        return cls(conn)

    @staticmethod
    def dec(micro: int) -> Any:
        return Decimal(micro).scaleb(-SCALE)

    @staticmethod
    def ts(moment: datetime) -> Any:
        return moment

    @staticmethod
    def flag(value: bool) -> Any:
        return value

    async def insert(self, table: str, cols: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        await self.conn.copy_records_to_table(table, records=list(rows), columns=list(cols))

    async def execute(self, sql: str) -> None:
        await self.conn.execute(sql)

    async def finish_phase(self) -> None:
        for table in ("products", "batches"):
            await self.conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
        await self.conn.execute("ANALYZE")  # what autovacuum does shortly after a bulk load

    async def close(self) -> None:
        await self.conn.close()


def pg_dsn(url: str) -> str:
    """The asyncpg DSN of a postgresql+asyncpg SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


# ---------------------------------------------------------------------------------------------------------------
# The synthetic ledger: catalogue, stocked (product, warehouse) keys and a chronological movement stream.


@dataclass
class Ledger:
    """In-memory state of the generated ledger, so balances stay equal to the sum of the moves."""

    products: int
    movements: int
    seed: int
    rng: random.Random = field(init=False)
    width: int = field(init=False)
    key_pid: list[int] = field(default_factory=list)
    key_wid: list[int] = field(default_factory=list)
    step: list[int] = field(default_factory=list)  # scaled quantity of one step (1 or 0.5 units)
    size: list[int] = field(default_factory=list)  # typical issue, in steps
    bal: list[int] = field(default_factory=list)
    cnt: list[int] = field(default_factory=list)
    mx: list[int] = field(default_factory=list)
    last: list[datetime | None] = field(default_factory=list)
    cum: list[float] = field(default_factory=list)
    written: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.width = max(5, len(str(self.products - 1)))
        self.end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        self.start = self.end - timedelta(days=365)

    def sku(self, i: int) -> str:
        return f"SKU{i:0{self.width}d}"

    def name(self, i: int) -> str:
        return f"{BASES[i % len(BASES)][0]}-{i:0{self.width}d}"

    def fragment(self, i: int) -> str:
        """A name fragment matching the products of i's base within its block of 100 numbers."""
        return f"{BASES[i % len(BASES)][0]}-{i:0{self.width}d}"[:-2]

    def product_rows(self, ld: SqliteLoader | PgLoader) -> Iterable[tuple]:
        zero, one, no = ld.dec(0), ld.dec(UNIT), ld.flag(False)
        for i in range(self.products):
            _, unit, punit, factor, _ = BASES[i % len(BASES)]
            yield (i + 1, self.sku(i), self.name(i), f"69{i:011d}", "原料", unit, punit, factor, 180, no, 3, 2,
                   zero, one, no)

    def build_keys(self, warehouses: int) -> None:
        """Each product stocked in 1–5 warehouses; key popularity is skewed (a few best sellers)."""
        rng = self.rng
        keys = []
        for i in range(self.products):
            for w in rng.sample(range(1, warehouses + 1), rng.randint(1, 5)):
                keys.append((i + 1, w, BASES[i % len(BASES)][4]))
        rng.shuffle(keys)
        total = 0.0
        for rank, (pid, wid, half) in enumerate(keys, start=1):
            self.key_pid.append(pid)
            self.key_wid.append(wid)
            self.step.append(HALF if half else UNIT)
            self.size.append(rng.randint(1, 20))
            total += rank**-0.7
            self.cum.append(total)
        n = len(keys)
        self.bal, self.cnt, self.mx, self.last = [0] * n, [0] * n, [0] * n, [None] * n

    def move_rows(self, count: int, doc_ids: Sequence[int], ld: SqliteLoader | PgLoader) -> list[tuple]:
        """The next `count` movements in time order, updating the running balances."""
        rng, rand = self.rng, self.rng.random
        bal, cnt, mx, last, step, size = self.bal, self.cnt, self.mx, self.last, self.step, self.size
        key_pid, key_wid, dec, ts = self.key_pid, self.key_wid, ld.dec, ld.ts
        slot = (self.end - self.start).total_seconds() / self.movements
        t0 = self.start.timestamp()
        month = (self.end - self.start).total_seconds() / len(doc_ids)
        picks = rng.choices(range(len(key_pid)), cum_weights=self.cum, k=count)
        rows = []
        for j, k in enumerate(picks, start=self.written):
            b, st, s = bal[k], step[k], size[k]
            if b < 3 * s * st or rand() < 0.03:
                q = (5 + int(rand() * 16)) * s * st  # receipt
            else:
                q = -(1 + int(rand() * s)) * st  # issue, never below zero
            b += q
            bal[k] = b
            cnt[k] += 1
            if abs(q) > mx[k]:
                mx[k] = abs(q)
            offset = (j + 0.9 * rand()) * slot
            moment = datetime.fromtimestamp(t0 + offset, UTC)
            last[k] = moment
            pid = key_pid[k]
            rows.append((doc_ids[min(len(doc_ids) - 1, int(offset / month))], pid, key_wid[k], pid, "stock",
                         dec(q), dec(b), ts(moment)))
        self.written += count
        return rows

    def balance_rows(self, ld: SqliteLoader | PgLoader) -> list[tuple]:
        """One row per stocked key at every size (zero until its first movement), so both sizes scan alike."""
        zero = ld.dec(0)
        return [
            (self.key_pid[k], self.key_wid[k], self.key_pid[k], ld.dec(self.bal[k]), zero, ld.dec(self.mx[k]),
             self.cnt[k], ld.ts(self.last[k] or self.start))
            for k in range(len(self.key_pid))
        ]


async def write_balances(ld: SqliteLoader | PgLoader, ledger: Ledger) -> int:
    rows = ledger.balance_rows(ld)
    await ld.execute("DELETE FROM stock_balances")
    await ld.insert("stock_balances", BALANCE_COLS, rows)
    await ld.finish_phase()
    return len(rows)


async def load_moves(ld: SqliteLoader | PgLoader, ledger: Ledger, upto: int, doc_ids: Sequence[int],
                     t0: float) -> None:
    chunk = 50_000
    report = max(chunk, ledger.movements // 10)
    phase_start, phase_first = time.perf_counter(), ledger.written
    while ledger.written < upto:
        n = min(chunk, upto - ledger.written)
        before = ledger.written
        await ld.insert("stock_moves", MOVE_COLS, ledger.move_rows(n, doc_ids, ld))
        if ledger.written // report > before // report or ledger.written == upto:
            rate = (ledger.written - phase_first) / (time.perf_counter() - phase_start)
            log(t0, f"movements {ledger.written:,} / {ledger.movements:,} ({rate:,.0f} rows/s)")


# ---------------------------------------------------------------------------------------------------------------
# Measurements.


async def seed_small_masters(db: Database, ledger: Ledger) -> list[int]:
    """Warehouses, a customer, a supplier and the dummy history documents (through the ORM)."""
    async with db.session() as s:
        s.add_all(Warehouse(code=c, name=n, allow_negative=neg, negative_floor=Decimal(-50 if neg else 0))
                  for c, n, neg in WAREHOUSES)
        s.add_all([Customer(code="C001", name="连锁客户甲"), Supplier(code="SUP001", name="原料供应商")])
        when = [ledger.start + timedelta(days=30 * m) for m in range(HISTORY_DOCS)]
        docs = [
            Document(number=f"HIST{m:03d}", type="adjustment", status="posted", validation_mode="strict",
                     note="历史流水（基准测试）", created_at=at, submitted_at=at, posted_at=at)
            for m, at in enumerate(when)
        ]
        s.add_all(docs)
        await s.flush()
        return [d.id for d in docs]


@dataclass(frozen=True)
class QueryStats:
    sku_ms: list[float]
    name_ms: list[float]
    matches_per_name_query: float
    rows_per_query: float

    @property
    def all_ms(self) -> list[float]:
        return self.sku_ms + self.name_ms

    def summary(self, suffix: str = "") -> dict[str, float]:
        out = {}
        for mode, values in (("", self.all_ms), ("_sku", self.sku_ms), ("_name", self.name_ms)):
            out[f"query{suffix}_ms_p50{mode}"] = round(pct(values, 50), 3)
            out[f"query{suffix}_ms_p99{mode}"] = round(pct(values, 99), 3)
        return out


async def measure_queries(url: str, skus: list[str], fragments: list[str],
                          without: Sequence[str] = ()) -> QueryStats:
    """What the `stock` command does: stock_lookup (find + levels) inside db.read(), timed per query."""
    db = Database(url, without=without)
    try:
        return await time_queries(db, skus, fragments, chat=False)
    finally:
        await db.dispose()


async def time_queries(db: Database, skus: list[str], fragments: list[str], *, chat: bool) -> QueryStats:
    """Time each query on db: stock_lookup in db.read() (`jxcbot stock`), or with chat current_stock through
    db.fetch (the chat command 库存: one statement on a SQLite reader thread, no session)."""
    matches, rows = [], []

    async def one(q: str) -> float:
        t = time.perf_counter()
        if chat:
            products, levels = await current_stock(db, q)
        else:
            async with db.read(snapshot=False) as s:  # as the stock command: one statement
                products, levels = await stock_lookup(s, q)
        elapsed = (time.perf_counter() - t) * 1000
        matches.append(len(products))
        rows.append(len(levels))
        return elapsed

    for q in skus[:25] + fragments[:25]:  # warm the pool, statement caches and page cache
        await one(q)
    matches.clear()
    rows.clear()
    sku_ms, name_ms, name_matches = [], [], []
    for sku, frag in zip(skus, fragments, strict=True):  # interleaved, so drift hits both modes alike
        sku_ms.append(await one(sku))
        name_ms.append(await one(frag))
        name_matches.append(matches[-1])
    return QueryStats(sku_ms, name_ms, sum(name_matches) / len(name_matches), sum(rows) / len(rows))


@dataclass(frozen=True)
class DocPlan:
    doc_type: str
    warehouse: str
    lines: list[LineInput]


def plan_documents(ledger: Ledger, count: int, lines_per_doc: int) -> list[DocPlan]:
    """Sales issues and receipts alternately, on products stocked in strict warehouses; issues never go short."""
    rng = random.Random(ledger.seed + 1)
    strict = [i + 1 for i, (_, _, neg) in enumerate(WAREHOUSES) if not neg]
    by_wh: dict[int, list[int]] = defaultdict(list)
    for k, wid in enumerate(ledger.key_wid):
        if wid in strict and ledger.cnt[k] >= 3:
            by_wh[wid].append(k)
    avail = list(ledger.bal)
    plans = []
    for n in range(count):
        issue = n % 2 == 0
        wid = rng.choice(strict)
        lines: list[LineInput] = []
        for k in rng.sample(by_wh[wid], len(by_wh[wid])):
            qty = rng.randint(1, 3) if issue else rng.randint(5, 20)
            if issue and avail[k] < (qty + 1) * UNIT:
                continue
            avail[k] += -qty * UNIT if issue else qty * UNIT
            i = ledger.key_pid[k] - 1
            lines.append(LineInput(sku=ledger.sku(i), qty=Decimal(qty), unit=BASES[i % len(BASES)][1],
                                   unit_price=Decimal("12.5")))
            if len(lines) == lines_per_doc:
                break
        plans.append(DocPlan("sales_issue" if issue else "purchase_receipt", WAREHOUSES[wid - 1][0], lines))
    return plans


async def create_submitted(session: Any, settings: Settings, plan: DocPlan) -> Document:
    """Create the planned document and submit it (a sales issue to customer C001, a receipt from SUP001)."""
    extra = {"customer": "C001"} if plan.doc_type == "sales_issue" else {"supplier": "SUP001"}
    doc = await create_document(session, settings, plan.doc_type, plan.lines, warehouse=plan.warehouse, **extra)
    return await submit_document(session, settings, doc)


async def post_all(db: Database, settings: Settings, plans: list[DocPlan], concurrency: int) -> list[int]:
    """Create + submit + post each document in its own write transaction; returns the document ids."""
    ids: list[int] = []

    async def post_one(plan: DocPlan) -> None:
        async def work(session: Any) -> int:
            doc = await create_submitted(session, settings, plan)
            result = await post_document(session, settings, doc)
            if result.moves != len(plan.lines):
                raise AssertionError(f"{doc.number}: {result.moves} moves for {len(plan.lines)} lines")
            return doc.id

        ids.append(await db.write(work))

    async def worker(queue: list[DocPlan]) -> None:
        for plan in queue:
            await post_one(plan)

    await asyncio.gather(*(worker(plans[i::concurrency]) for i in range(concurrency)))
    return ids


async def post_submitted(db: Database, settings: Settings, plans: list[DocPlan]) -> float:
    """Create + submit every document (untimed), then time posting them one transaction each (load + post)."""
    numbers: list[str] = []
    for plan in plans:
        async def prepare_one(session: Any, plan: DocPlan = plan) -> str:
            return (await create_submitted(session, settings, plan)).number

        numbers.append(await db.write(prepare_one))
    t = time.perf_counter()
    for number in numbers:
        async def post_one(session: Any, number: str = number) -> None:
            await post_document(session, settings, await get_document(session, number))

        await db.write(post_one)
    return time.perf_counter() - t


async def posted_rows(db: Database, doc_ids: list[int]) -> dict[int, list[tuple]]:
    """The stock_moves rows the posting wrote, per document, in the raw driver's own values."""
    if db.is_sqlite:
        path = make_url(db.url).database
        conn = sqlite3.connect(path)
        try:
            marks = ",".join("?" * len(doc_ids))
            rows = conn.execute(
                f"SELECT {', '.join(RAW_COLS)} FROM stock_moves WHERE document_id IN ({marks}) ORDER BY id", doc_ids
            ).fetchall()
        finally:
            conn.close()
    else:
        async with db.read() as s:
            cols = [getattr(StockMove, c) for c in RAW_COLS]
            stmt = select(*cols).where(StockMove.document_id.in_(doc_ids)).order_by(StockMove.id)
            rows = [tuple(r) for r in (await s.execute(stmt)).all()]
    by_doc: dict[int, list[tuple]] = defaultdict(list)
    for r in rows:
        by_doc[r[0]].append(r)
    return by_doc


def raw_floor_sqlite(path: str, by_doc: dict[int, list[tuple]]) -> tuple[float, float]:
    """(per-document transactions, one bulk transaction) lines/s of stdlib executemany into a stock_moves copy."""
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=10000", "synchronous=NORMAL"):
        conn.execute(f"PRAGMA {pragma}")
    ddl = [sql for (sql,) in conn.execute(
        "SELECT sql FROM sqlite_master WHERE tbl_name = 'stock_moves' AND sql IS NOT NULL ORDER BY type DESC"
    )]
    insert = f"INSERT INTO bench_raw_moves ({', '.join(RAW_COLS)}) VALUES ({', '.join('?' * len(RAW_COLS))})"
    total = sum(len(v) for v in by_doc.values())

    def fresh_table() -> None:
        conn.execute("DROP TABLE IF EXISTS bench_raw_moves")
        for sql in ddl:  # table first (type 'table' sorts after 'index' descending), then its indexes
            conn.execute(sql.replace("stock_moves", "bench_raw_moves").replace(
                "REFERENCES bench_raw_moves", "REFERENCES stock_moves"))

    try:
        fresh_table()
        t = time.perf_counter()
        for rows in by_doc.values():
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(insert, rows)
            conn.execute("COMMIT")
        per_doc = total / (time.perf_counter() - t)
        fresh_table()
        t = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(insert, [r for rows in by_doc.values() for r in rows])
        conn.execute("COMMIT")
        bulk = total / (time.perf_counter() - t)
        conn.execute("DROP TABLE bench_raw_moves")
    finally:
        conn.close()
    return per_doc, bulk


class StatementLog:
    """Records every statement (with its driver parameters) the write engine runs, and each COMMIT.

    Statements go two ways: through SQLAlchemy (seen by its before_cursor_execute event) and, on the posting
    path, straight to the raw connection via core/fastsql.py (seen by wrapping the adapter's run_raw)."""

    COMMIT = object()

    def __init__(self, db: Database) -> None:
        self.entries: list[Any] = []
        self.engine = db.write_engine.sync_engine
        self.active = False
        event.listen(self.engine, "begin", self._begin)  # core/db.py sends BEGIN IMMEDIATE on the cursor itself
        event.listen(self.engine, "before_cursor_execute", self._statement)
        event.listen(self.engine, "commit", self._commit)
        self._run_raw = OneHopConnection.run_raw
        log = self

        async def run_raw(adapter: Any, fn: Any, *args: Any) -> Any:
            if log.active:  # fastsql calls fn(conn, sql, params[, many])
                sql, params, many = args[0], args[1], args[2] if len(args) > 2 else False
                log.entries.append((sql, [tuple(p) for p in params] if many else tuple(params)))
            return await log._run_raw(adapter, fn, *args)

        OneHopConnection.run_raw = run_raw  # type: ignore[method-assign]

    def _statement(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool) -> None:
        if self.active:
            self.entries.append((statement, parameters))

    def _begin(self, _conn: Any) -> None:
        if self.active:
            self.entries.append(("BEGIN IMMEDIATE", ()))

    def _commit(self, _conn: Any) -> None:
        if self.active:
            self.entries.append(self.COMMIT)

    def close(self) -> None:
        event.remove(self.engine, "begin", self._begin)
        event.remove(self.engine, "before_cursor_execute", self._statement)
        event.remove(self.engine, "commit", self._commit)
        OneHopConnection.run_raw = self._run_raw  # type: ignore[method-assign]


def snapshot_sqlite(path: str) -> str:
    """A consistent copy of the database file (sqlite3 backup API); returns its path."""
    copy = path + ".replay"
    src, dst = sqlite3.connect(path), sqlite3.connect(copy)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    return copy


def replay_sqlite(path: str, entries: list[Any], lines: int) -> float:
    """Lines/s of the posting run's own statements replayed with plain sqlite3 on the snapshot taken before it."""
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=10000", "synchronous=NORMAL"):
        conn.execute(f"PRAGMA {pragma}")
    try:
        t = time.perf_counter()
        for entry in entries:
            if entry is StatementLog.COMMIT:
                conn.execute("COMMIT")
            elif isinstance(entry[1], list):  # an executemany (insertmanyvalues batches arrive as one tuple)
                conn.executemany(entry[0], entry[1])
            else:
                conn.execute(entry[0], entry[1]).fetchall()
        return lines / (time.perf_counter() - t)
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(path + suffix).unlink(missing_ok=True)


async def raw_floor_pg(url: str, by_doc: dict[int, list[tuple]]) -> tuple[float, float]:
    """(per-document transactions, one bulk COPY) lines/s of asyncpg copy_records_to_table into a copy table."""
    import asyncpg

    conn = await asyncpg.connect(pg_dsn(url))
    total = sum(len(v) for v in by_doc.values())

    async def fresh_table() -> None:
        await conn.execute("DROP TABLE IF EXISTS bench_raw_moves")
        await conn.execute("CREATE TABLE bench_raw_moves (LIKE stock_moves INCLUDING ALL)")

    try:
        await fresh_table()
        t = time.perf_counter()
        for rows in by_doc.values():
            async with conn.transaction():
                await conn.copy_records_to_table("bench_raw_moves", records=rows, columns=list(RAW_COLS))
        per_doc = total / (time.perf_counter() - t)
        await fresh_table()
        t = time.perf_counter()
        async with conn.transaction():
            await conn.copy_records_to_table("bench_raw_moves", records=[r for rows in by_doc.values() for r in rows],
                                             columns=list(RAW_COLS))
        bulk = total / (time.perf_counter() - t)
        await conn.execute("DROP TABLE bench_raw_moves")
    finally:
        await conn.close()
    return per_doc, bulk


# ---------------------------------------------------------------------------------------------------------------
# The run.


@dataclass
class Options:
    url: str
    products: int
    movements: int
    checkpoint: int
    queries: int
    docs: int
    lines: int
    concurrency: int
    seed: int
    without: tuple[str, ...] = ()
    variants: tuple[str, ...] = ()  # names of VARIANTS: measure those instead of the main run
    rounds: int = 3
    variant_docs: int = 500


async def build(opts: Options, t0: float, *, measure_first: bool) -> tuple[Ledger, dict[str, Any]]:
    """Schema, masters and the generated ledger (raw driver); with measure_first, the queries at the
    checkpoint size too. Returns the ledger and the build's facts."""
    ledger = Ledger(opts.products, opts.movements, opts.seed)
    db = Database(opts.url)
    log(t0, f"schema on {db.dialect}")
    await recreate_schema(db)
    doc_ids = await seed_small_masters(db, ledger)
    await db.dispose()

    ld: SqliteLoader | PgLoader = (
        SqliteLoader(make_url(opts.url).database) if db.is_sqlite else await PgLoader.open(opts.url)
    )
    build_start = time.perf_counter()
    try:
        await ld.insert("products", ("id", "sku", "name", "barcode", "category", "stock_unit", "purchase_unit",
                                     "purchase_factor", "shelf_life_days", "batch_tracked", "lead_time_days",
                                     "buffer_days", "moq", "pack_size", "auto_replenish"), ledger.product_rows(ld))
        await ld.insert("batches", ("id", "product_id", "code"), ((i, i, "") for i in range(1, opts.products + 1)))
        ledger.build_keys(len(WAREHOUSES))
        log(t0, f"{opts.products:,} products, {len(WAREHOUSES)} warehouses, {len(ledger.key_pid):,} stocked keys")

        first = min(opts.checkpoint, opts.movements)
        await load_moves(ld, ledger, first, doc_ids, t0)
        balances_first = await write_balances(ld, ledger)
        keys_moved_first = sum(1 for c in ledger.cnt if c)
        build_first = time.perf_counter() - build_start

        rng = random.Random(opts.seed + 2)
        skus = [ledger.sku(rng.randrange(opts.products)) for _ in range(opts.queries)]
        fragments = [ledger.fragment(rng.randrange(opts.products)) for _ in range(opts.queries)]
        q_first = None
        if measure_first:
            log(t0, f"querying at {human(first)} movements ({2 * opts.queries} queries)")
            q_first = await measure_queries(opts.url, skus, fragments, opts.without)

        resumed = time.perf_counter()
        await load_moves(ld, ledger, opts.movements, doc_ids, t0)
        balances = await write_balances(ld, ledger)
        build_seconds = build_first + time.perf_counter() - resumed
    finally:
        await ld.close()
    facts = {"skus": skus, "fragments": fragments, "q_first": q_first, "first": first,
             "balances_first": balances_first, "keys_moved_first": keys_moved_first, "balances": balances,
             "build_seconds": build_seconds, "dialect": db.dialect}
    return ledger, facts


async def run(opts: Options, t0: float) -> dict[str, Any]:
    ledger, facts = await build(opts, t0, measure_first=True)
    skus, fragments, q_first, first = facts["skus"], facts["fragments"], facts["q_first"], facts["first"]
    balances_first, keys_moved_first = facts["balances_first"], facts["keys_moved_first"]
    balances, build_seconds = facts["balances"], facts["build_seconds"]

    log(t0, f"querying at {human(opts.movements)} movements ({2 * opts.queries} queries)")
    q_last = await measure_queries(opts.url, skus, fragments, opts.without)

    settings = Settings()
    warm = 10
    plans = plan_documents(ledger, warm + 3 * opts.docs, opts.lines)
    posted_lines = sum(len(p.lines) for p in plans[warm:warm + opts.docs])
    conc_plans = plans[warm + opts.docs:warm + 2 * opts.docs]
    conc_lines = sum(len(p.lines) for p in conc_plans)
    only_plans = plans[warm + 2 * opts.docs:]
    only_lines = sum(len(p.lines) for p in only_plans)
    db = Database(opts.url, without=opts.without)
    try:
        await post_all(db, settings, plans[:warm], 1)
        snapshot = snapshot_sqlite(make_url(opts.url).database) if db.is_sqlite else None
        statements = StatementLog(db)
        log(t0, f"posting {opts.docs} documents × {opts.lines} lines, one task")
        statements.active = True
        t = time.perf_counter()
        seq_ids = await post_all(db, settings, plans[warm:warm + opts.docs], 1)
        seq_seconds = time.perf_counter() - t
        statements.active = False
        statements.close()
        log(t0, f"posting {opts.docs} documents × {opts.lines} lines, {opts.concurrency} concurrent tasks")
        t = time.perf_counter()
        await post_all(db, settings, conc_plans, opts.concurrency)
        conc_seconds = time.perf_counter() - t
        log(t0, f"posting {opts.docs} created and submitted documents (post step only), one task")
        only_seconds = await post_submitted(db, settings, only_plans)
        by_doc = await posted_rows(db, seq_ids)
    finally:
        await db.dispose()

    log(t0, "raw-driver floor")
    if db.is_sqlite:
        raw_per_doc, raw_bulk = raw_floor_sqlite(make_url(opts.url).database, by_doc)
    else:
        raw_per_doc, raw_bulk = await raw_floor_pg(opts.url, by_doc)

    replay_rate = None
    if snapshot is not None:
        log(t0, "replaying the posting run's statements with plain sqlite3")
        replay_rate = replay_sqlite(snapshot, statements.entries, posted_lines)
    statements_per_doc = sum(1 for e in statements.entries if e is not StatementLog.COMMIT) / opts.docs
    # Posting = the post step (a submitted document loaded and posted: what turns documents into moves, the
    # same rows the raw floor writes). The full cycle (create + submit + post) is reported beside it.
    post_rate = only_lines / only_seconds
    cycle_rate = posted_lines / seq_seconds
    growth = pct(q_last.all_ms, 50) / pct(q_first.all_ms, 50)
    result: dict[str, Any] = {
        "backend": db.dialect,
        "without": list(db.without),
        "post_lines_per_s": round(post_rate, 1),
        "raw_floor_lines_per_s": round(raw_per_doc, 1),
        "query_ms_p50": round(pct(q_last.all_ms, 50), 3),
        "query_ms_p99": round(pct(q_last.all_ms, 99), 3),
        "query_growth_ratio": round(growth, 3),
        "post_to_raw_ratio": round(post_rate / raw_per_doc, 4),
        "post_ms_per_doc": round(only_seconds / len(only_plans) * 1000, 3),
        "cycle_lines_per_s": round(cycle_rate, 1),
        "cycle_ms_per_doc": round(seq_seconds / opts.docs * 1000, 3),
        "cycle_concurrent_lines_per_s": round(conc_lines / conc_seconds, 1),
        "cycle_concurrency": opts.concurrency,
        "cycle_statements_per_doc": round(statements_per_doc, 1),
        "cycle_sql_replay_lines_per_s": None if replay_rate is None else round(replay_rate, 1),
        "raw_bulk_lines_per_s": round(raw_bulk, 1),
        "docs_posted": opts.docs,
        "lines_posted": posted_lines,
        **q_last.summary(),
        **q_first.summary("_first"),
        "queries_per_mode": opts.queries,
        "name_query_matches_avg": round(q_last.matches_per_name_query, 2),
        "rows_per_query_first": round(q_first.rows_per_query, 2),
        "rows_per_query": round(q_last.rows_per_query, 2),
        "products": opts.products,
        "warehouses": len(WAREHOUSES),
        "stocked_keys": len(ledger.key_pid),
        "keys_moved_first": keys_moved_first,
        "movements_first": first,
        "movements": opts.movements,
        "balance_rows_first": balances_first,
        "balance_rows": balances,
        "build_seconds": round(build_seconds, 1),
    }
    if db.is_sqlite:
        result["sqlite_version"] = sqlite3.sqlite_version
        path = Path(make_url(opts.url).database)
        result["db_size_mb"] = round(sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 2**20, 1)
    result["targets_met"] = {
        "post_lines_per_s": post_rate >= TARGET_POST,
        "query_ms_p50": result["query_ms_p50"] <= TARGET_P50,
        "query_ms_p99": result["query_ms_p99"] <= TARGET_P99,
        "query_growth_ratio": growth <= TARGET_GROWTH,
    }
    return result


# (name, parts of the SQLite speed code left out); "bare" is plain SQLAlchemy + aiosqlite, the yardstick.
VARIANTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("default", ()),
    ("no-one-hop", ("one_hop",)),
    ("no-writer-thread", ("writer_thread",)),
    ("no-reader-threads", ("reader_threads",)),
    ("no-fastsql", ("fastsql",)),
    ("no-orm-rows", ("orm_rows",)),
    ("bare", SPEED_PARTS),
)
VARIANT_WARM = 10  # documents created, submitted and posted per variant and round before timing


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


async def measure_variant(opts: Options, settings: Settings, without: tuple[str, ...], plans: list[DocPlan],
                          skus: list[str], fragments: list[str]) -> dict[str, float]:
    """One round of one variant: the two query paths, the post step and create + submit + post, one task."""
    db = Database(opts.url, without=without)
    n = opts.variant_docs
    warm, submitted, cycle = plans[:VARIANT_WARM], plans[VARIANT_WARM:VARIANT_WARM + n], plans[VARIANT_WARM + n:]
    try:
        await post_all(db, settings, warm, 1)
        stock = await time_queries(db, skus, fragments, chat=False)
        chat = await time_queries(db, skus, fragments, chat=True)
        post_seconds = await post_submitted(db, settings, submitted)
        t = time.perf_counter()
        await post_all(db, settings, cycle, 1)
        cycle_seconds = time.perf_counter() - t
    finally:
        await db.dispose()
    return {
        "post_lines_per_s": sum(len(p.lines) for p in submitted) / post_seconds,
        "cycle_lines_per_s": sum(len(p.lines) for p in cycle) / cycle_seconds,
        "stock_ms_p50": pct(stock.all_ms, 50), "stock_ms_p99": pct(stock.all_ms, 99),
        "chat_ms_p50": pct(chat.all_ms, 50), "chat_ms_p99": pct(chat.all_ms, 99),
    }


async def warm_variant(opts: Options, settings: Settings, without: tuple[str, ...], plans: list[DocPlan],
                       skus: list[str], fragments: list[str]) -> None:
    """Untimed: each path once, so no variant pays the process's first-use costs (mapper set-up, Fast shapes)."""
    db = Database(opts.url, without=without)
    try:
        await post_all(db, settings, plans[:VARIANT_WARM], 1)
        await post_submitted(db, settings, plans[VARIANT_WARM:])
        await time_queries(db, skus[:25], fragments[:25], chat=False)
        await time_queries(db, skus[:25], fragments[:25], chat=True)
    finally:
        await db.dispose()


async def run_variants(opts: Options, t0: float) -> dict[str, Any]:
    """Build once, warm every variant up untimed, then measure every variant once per round (each round
    starting one variant later, so drift and the ledger's growth spread over all of them); per variant the
    median of its rounds."""
    ledger, facts = await build(opts, t0, measure_first=False)
    if facts["dialect"] != "sqlite":
        raise SystemExit("--variants measures the SQLite speed code: run it on SQLite")
    chosen = [(name, parts) for name, parts in VARIANTS if name in opts.variants]
    per, warm = VARIANT_WARM + 2 * opts.variant_docs, 2 * VARIANT_WARM
    total = len(chosen) * (warm + opts.rounds * per)
    log(t0, f"planning {total:,} documents")
    plans = plan_documents(ledger, total, opts.lines)
    settings = Settings()
    for i, (name, parts) in enumerate(chosen):
        log(t0, f"warming up: {name}")
        await warm_variant(opts, settings, parts, plans[i * warm:(i + 1) * warm], facts["skus"], facts["fragments"])
    plans = plans[len(chosen) * warm:]
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name, _ in chosen}
    slot = 0
    for r in range(opts.rounds):
        for i in range(len(chosen)):
            name, parts = chosen[(i + r) % len(chosen)]
            log(t0, f"round {r + 1}/{opts.rounds}: {name}")
            rounds[name].append(await measure_variant(opts, settings, parts, plans[slot * per:(slot + 1) * per],
                                                      facts["skus"], facts["fragments"]))
            slot += 1
    keys = list(next(iter(rounds.values()))[0])
    variants = {
        name: {"without": list(parts),
               **{k: round(median([m[k] for m in rounds[name]]), 3) for k in keys},
               "rounds": [{k: round(v, 3) for k, v in m.items()} for m in rounds[name]]}
        for name, parts in chosen
    }
    return {
        "backend": "sqlite",
        "products": opts.products,
        "movements": opts.movements,
        "warehouses": len(WAREHOUSES),
        "rounds": opts.rounds,
        "docs_per_measure": opts.variant_docs,
        "queries_per_mode": opts.queries,
        "build_seconds": round(facts["build_seconds"], 1),
        "sqlite_version": sqlite3.sqlite_version,
        "variants": variants,
    }


def render_variants(r: dict[str, Any], url: str) -> str:
    """The variant table: medians over the rounds, and each figure against the default (every part in)."""
    v = r["variants"]
    base = v.get("default")

    def rel(name: str, key: str) -> str:
        if base is None or name == "default":
            return ""
        return f" ({v[name][key] / base[key]:.2f}x)"

    lines = [
        f"jxcbot ledger benchmark, SQLite speed-code variants ({make_url(url).render_as_string(hide_password=True)})",
        f"Data: {r['products']:,} products, {r['warehouses']} warehouses, {r['movements']:,} movements; built in "
        f"{r['build_seconds']:.1f} s. Each variant measured {r['rounds']} times in turn (rounds rotate the order); "
        "figures are the median of the rounds, (x) against default (every part in).",
        f"Posting: {r['docs_per_measure']} documents of 10 lines per measure, one task. Queries: "
        f"{r['queries_per_mode']} by SKU + {r['queries_per_mode']} by name fragment per path, at the full size.",
        "",
        f"  {'variant':<19}{'posting lines/s':>22}{'create+submit+post':>24}"
        f"{'stock p50 / p99 ms':>26}{'chat p50 / p99 ms':>26}",
    ]
    for name, m in v.items():
        stock = f"{m['stock_ms_p50']:.2f} / {m['stock_ms_p99']:.2f}{rel(name, 'stock_ms_p99')}"
        chat = f"{m['chat_ms_p50']:.2f} / {m['chat_ms_p99']:.2f}{rel(name, 'chat_ms_p99')}"
        lines.append(
            f"  {name:<19}{m['post_lines_per_s']:>14,.0f}{rel(name, 'post_lines_per_s'):>8}"
            f"{m['cycle_lines_per_s']:>16,.0f}{rel(name, 'cycle_lines_per_s'):>8}{stock:>26}{chat:>26}"
        )
    lines += [
        "",
        "  no-X: every part but X (Database(url, without={X})): one_hop = sqlite_driver.py's one-hop driver for",
        "  the caller-loop engines, writer_thread = writer_thread.py with the inline driver, reader_threads =",
        "  raw_reader.py, fastsql = fastsql.py's raw path, orm_rows = orm_rows.py's registration. bare: all out,",
        "  i.e. SQLAlchemy's aiosqlite driver, writes on the caller's loop, reads in sessions, Fast statements",
        "  through session.execute, objects through make_transient_to_detached + session.add.",
        "  stock = stock_lookup in db.read() (jxcbot stock); chat = current_stock through db.fetch (the chat",
        "  command 库存). Per round:",
    ]
    for name, m in v.items():
        posts = " / ".join(f"{x['post_lines_per_s']:,.0f}" for x in m["rounds"])
        p99s = " / ".join(f"{x['stock_ms_p99']:.2f}" for x in m["rounds"])
        chats = " / ".join(f"{x['chat_ms_p99']:.2f}" for x in m["rounds"])
        lines.append(f"  {name:<19}posting {posts};  stock p99 {p99s};  chat p99 {chats}")
    return "\n".join(lines)


def render(r: dict[str, Any], url: str) -> str:
    """The human-readable report."""
    ok = r["targets_met"]

    def mark(key: str) -> str:
        return "met" if ok[key] else "MISSED"

    first, last = human(r["movements_first"]), human(r["movements"])
    raw = "sqlite3 executemany" if r["backend"] == "sqlite" else "asyncpg COPY"
    lines = [
        f"jxcbot ledger benchmark on {r['backend']} ({make_url(url).render_as_string(hide_password=True)})"
        + (f", without {', '.join(r['without'])}" if r.get("without") else ""),
        f"Data: {r['products']:,} products, {r['warehouses']} warehouses, {r['movements']:,} movements "
        f"over 365 days; built in {r['build_seconds']:.1f} s"
        + (f", {r['db_size_mb']:,.1f} MB on disk" if "db_size_mb" in r else ""),
        f"      {r['balance_rows']:,} balance rows, one per stocked product and warehouse at both sizes "
        f"({r['keys_moved_first']:,} of them had moved at {human(r['movements_first'])})",
        "",
        f"Posting 10-line documents, {r['docs_posted']} per run, one write transaction each",
        f"  posting, one task            {r['post_lines_per_s']:>10,.0f} lines/s   "
        f"({r['post_ms_per_doc']:.1f} ms per document: load a submitted document and post it)   "
        f"target >= {TARGET_POST:,.0f}: {mark('post_lines_per_s')}",
        f"  create + submit + post       {r['cycle_lines_per_s']:>10,.0f} lines/s   "
        f"({r['cycle_ms_per_doc']:.1f} ms per document, one task)",
        f"  the same, {r['cycle_concurrency']} concurrent tasks  {r['cycle_concurrent_lines_per_s']:>10,.0f} lines/s",
        f"  raw floor, {raw:<19}{r['raw_floor_lines_per_s']:>9,.0f} lines/s   "
        "(the posted rows, one transaction per document)",
        f"  raw bulk, {raw:<20}{r['raw_bulk_lines_per_s']:>9,.0f} lines/s   (same rows, one transaction)",
        *([f"  SQL replay, sqlite3       {r['cycle_sql_replay_lines_per_s']:>12,.0f} lines/s   (the create + submit + "
           f"post run's own {r['cycle_statements_per_doc']:.0f} statements per document, without Python logic)"]
          if r.get("cycle_sql_replay_lines_per_s") else []),
        f"  posting / raw floor          {r['post_to_raw_ratio']:>10.3f}",
        "",
        f"Stock query (stock_lookup, one statement, as the stock command), {r['queries_per_mode']} queries per mode, "
        "in ms",
        f"  {'':<22}{'at ' + first + ' movements':>22}{'at ' + last + ' movements':>24}",
        f"  {'':<22}{'median':>11}{'p99':>11}{'median':>13}{'p99':>11}",
    ]
    for label, mode in (("by exact SKU", "_sku"), ("by name fragment", "_name"), ("overall", "")):
        lines.append(
            f"  {label:<22}{r[f'query_first_ms_p50{mode}']:>11.2f}{r[f'query_first_ms_p99{mode}']:>11.2f}"
            f"{r[f'query_ms_p50{mode}']:>13.2f}{r[f'query_ms_p99{mode}']:>11.2f}"
        )
    lines += [
        f"  a name fragment matched {r['name_query_matches_avg']:.1f} products on average; "
        f"non-zero warehouse rows shown per query: {r['rows_per_query_first']:.1f} at {first}, "
        f"{r['rows_per_query']:.1f} at {last}",
        f"  median at {last} <= {TARGET_P50:g} ms: {mark('query_ms_p50')};  p99 at {last} <= {TARGET_P99:g} ms: "
        f"{mark('query_ms_p99')};  growth {r['query_growth_ratio']:.2f}x <= {TARGET_GROWTH:g}x: "
        f"{mark('query_growth_ratio')}",
    ]
    if r["backend"] != "sqlite":
        lines.append("  (the targets are set for SQLite)")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.ledger", description=__doc__)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout (the table goes to stderr)")
    p.add_argument("--large", action="store_true", help="100k products × 5M movements instead of 10k × 1M")
    p.add_argument("--db", help="database URL (default: a fresh SQLite file in a temporary directory); "
                                "a PostgreSQL URL has its schema public DROPPED and recreated")
    p.add_argument("--products", type=int, help="override the number of products")
    p.add_argument("--movements", type=int, help="override the number of historical movements")
    p.add_argument("--queries", type=int, default=500, help="stock queries per mode and size (default 500)")
    p.add_argument("--docs", type=int, default=1000, help="documents posted per posting run (default 1000)")
    p.add_argument("--concurrency", type=int, default=4, help="tasks in the concurrent posting run (default 4)")
    p.add_argument("--seed", type=int, default=20240601)
    p.add_argument("--keep", action="store_true", help="keep the temporary SQLite database and print its path")
    p.add_argument("--without", default="", metavar="PART[,PART]",
                   help=f"leave parts of the SQLite speed code out of the main run ({', '.join(SPEED_PARTS)})")
    p.add_argument("--variants", nargs="?", const="all", metavar="NAME[,NAME]",
                   help="instead of the main run: each variant of the SQLite speed code in the same run "
                        f"(default all: {', '.join(n for n, _ in VARIANTS)})")
    p.add_argument("--rounds", type=int, default=3, help="rounds per variant with --variants (default 3)")
    p.add_argument("--variant-docs", type=int, default=500,
                   help="documents per posting measure with --variants (default 500)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    products = args.products or (100_000 if args.large else 10_000)
    movements = args.movements or (5_000_000 if args.large else 1_000_000)
    tmpdir: str | None = None
    if args.db:
        url = args.db
        if url.startswith("postgresql"):
            log(t0, f"WARNING: wiping schema public of {make_url(url).render_as_string(hide_password=True)}")
        elif url.startswith("sqlite"):
            path = make_url(url).database
            if not path or path == ":memory:" or Path(path).exists():
                print(f"refusing to use {path or 'an in-memory database'}: give a SQLite file that does not exist yet",
                      file=sys.stderr)
                return 2
        else:
            print("--db must be a sqlite+aiosqlite:// or postgresql+asyncpg:// URL", file=sys.stderr)
            return 2
    else:
        tmpdir = tempfile.mkdtemp(prefix="jxcbench-")
        url = f"sqlite+aiosqlite:///{tmpdir}/ledger.db"
    without = tuple(p for p in args.without.split(",") if p)
    if set(without) - set(SPEED_PARTS):
        print(f"--without takes {', '.join(SPEED_PARTS)}", file=sys.stderr)
        return 2
    names = [n for n, _ in VARIANTS]
    variants = tuple(names if args.variants == "all" else (args.variants or "").split(",") if args.variants else ())
    if set(variants) - set(names):
        print(f"--variants takes all or some of: {', '.join(names)}", file=sys.stderr)
        return 2
    if variants and not url.startswith("sqlite"):
        print("--variants measures the SQLite speed code: run it on SQLite", file=sys.stderr)
        return 2
    opts = Options(url, products, movements, 10_000, args.queries, args.docs, 10, args.concurrency, args.seed,
                   without, variants, args.rounds, args.variant_docs)
    try:
        result = asyncio.run(run_variants(opts, t0) if variants else run(opts, t0))
    finally:
        if tmpdir and not args.keep:
            shutil.rmtree(tmpdir, ignore_errors=True)
        elif tmpdir:
            log(t0, f"database kept at {tmpdir}/ledger.db")
    result["elapsed_seconds"] = round(time.perf_counter() - t0, 1)
    table = (render_variants if variants else render)(result, url) + \
        f"\nTotal wall time {result['elapsed_seconds']:.1f} s"
    emit(table, result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

