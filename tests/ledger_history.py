"""Ledger history for the replenishment tests: local times, documents at a time, daily sales, a CLI database."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings
from core.ledger.documents import LineInput, create_document, post_document, submit_document
from core.models import Document
from core.storage import Database
from tests.factories import line, seed


def local(settings: Settings, day: date, hour: int = 10) -> datetime:
    """`hour` o'clock on `day` in the configured time zone."""
    return datetime.combine(day, time(hour), settings.timezone)


async def dated(s: AsyncSession, settings: Settings, doc_type: str, lines: list[LineInput], when: datetime, *,
                submit: bool = True, post: bool = True, **kw: Any) -> Document:
    """Create a document at `when`, then submit it and post it (each unless told not to) at the same time."""
    doc = await create_document(s, settings, doc_type, lines, now=when, **kw)
    if submit:
        await submit_document(s, settings, doc, now=when)
    if post:
        await post_document(s, settings, doc, now=when)
    return doc


async def daily_sales(s: AsyncSession, settings: Settings, sku: str, unit: str, first: date, last: date,
                      qty: int) -> None:
    """One posted sales issue of qty per day from first to last (inclusive) in WH1."""
    day = first
    while day <= last:
        await dated(s, settings, "sales_issue", [line(sku, qty, unit)], local(settings, day), warehouse="WH1")
        day += timedelta(days=1)


def cli_config(tmp_path: Path, name: str) -> tuple[str, str]:
    """A jxcbot.toml in tmp_path for the SQLite file `name`.db; returns (config path, database url)."""
    url = f"sqlite+aiosqlite:///{tmp_path / f'{name}.db'}"
    cfg = tmp_path / "jxcbot.toml"
    cfg.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
    return str(cfg), url


async def cli_database(tmp_path: Path, name: str, *, seeded: bool = True) -> tuple[str, str]:
    """cli_config plus `jxcbot init` (and tests.factories.seed unless seeded=False); returns (config path, url)."""
    from cli.main import run

    cfg, url = cli_config(tmp_path, name)
    assert await run(["--config", cfg, "init"]) == 0
    if seeded:
        db = Database(url)
        try:
            async with db.session() as s:
                await seed(s)
        finally:
            await db.dispose()
    return cfg, url
