"""What a job run gets: the database, settings, the neutral outbound, its period, and `send`, which queues a
message once per (job, period, part) — a re-run, a takeover after a crash or a second instance queues nothing new."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from cards.model import Message
from core.config import Settings
from core.messaging.outbound import Outbound
from core.messaging.recipients import Recipient, ToChannel
from core.storage import Database

T = TypeVar("T")


@dataclass
class JobContext:
    """One run of one job for one period. `now` is timezone-aware; `local` is it in the configured timezone.
    `channel`: the job's configured channel (empty: none). `extras`: services the server wires in (e.g. the
    approval-card sender), by name. `queued` counts the outbox rows this run added."""

    job: str
    period: str
    now: datetime
    db: Database
    settings: Settings
    outbound: Outbound
    channel: str = ""
    extras: dict[str, Any] = field(default_factory=dict)
    queued: int = 0

    @property
    def local(self) -> datetime:
        """`now` in the configured timezone."""
        return self.now.astimezone(self.settings.timezone)

    def key(self, part: str) -> str:
        """The outbox key of one message of this run: job:{job}:{period}:{part}."""
        return f"job:{self.job}:{self.period}:{part}"

    async def send(self, to: Recipient, message: Message, part: str) -> int:
        """Queue `message` for `to` under this run's `part` (its own transaction); the rows queued."""
        rows = await self.db.write(lambda s: self.outbound.send(s, self.key(part), to, message, self.now))
        self.queued += rows
        return rows

    async def post(self, message: Message, part: str) -> int:
        """Queue `message` to the job's channel (nothing when the job has none)."""
        return await self.send(ToChannel(self.channel), message, part) if self.channel else 0

    async def heavy(self, fn: Callable[..., T], *args: Any) -> T:
        """Run CPU-heavy work (numpy, matplotlib, spreadsheets) in a worker thread, off the event loop."""
        return await asyncio.to_thread(fn, *args)
