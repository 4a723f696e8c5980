"""Files a report attaches, kept once per report part and downloaded by an unguessable token (/files/<token>)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings
from core.models import ReportFile

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
KEEP_DAYS = 90  # a download link works this long
PATH = "/files/"


@dataclass(frozen=True)
class StoredFile:
    """A kept file: its token and name (and the bytes when read back)."""

    token: str
    filename: str
    content_type: str
    data: bytes = b""


async def store_file(session: AsyncSession, key: str, filename: str, data: bytes, now: datetime,
                     content_type: str = XLSX) -> StoredFile:
    """Keep `data` under `key` (a re-run of the same report part gets the file kept the first time)."""
    found = await session.scalar(select(ReportFile).where(ReportFile.key == key))
    if found is None:
        found = ReportFile(key=key, token=secrets.token_urlsafe(32), filename=filename, content_type=content_type,
                           size=len(data), data=data, created_at=now)
        session.add(found)
        await session.flush()
    return StoredFile(found.token, found.filename, found.content_type)


async def read_file(session: AsyncSession, token: str, now: datetime) -> StoredFile | None:
    """The file of a download token, None when unknown or older than KEEP_DAYS."""
    if not token or len(token) > 64:
        return None
    found = await session.scalar(select(ReportFile).where(ReportFile.token == token))
    if found is None or found.created_at < now - timedelta(days=KEEP_DAYS):
        return None
    return StoredFile(found.token, found.filename, found.content_type, found.data)


def download_url(settings: Settings, token: str) -> str:
    """The link to a kept file: absolute under `[dingtalk] public_url` when configured (people's phones reach
    the server there), else the server-relative path (the console opens it)."""
    dingtalk = settings.raw.get("dingtalk")
    base = str(dingtalk.get("public_url") or "").rstrip("/") if isinstance(dingtalk, Mapping) else ""
    return f"{base}{PATH}{token}"
