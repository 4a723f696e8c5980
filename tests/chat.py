"""Chat events through a real dispatcher in tests: send as a console user, read back what was queued."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

from sqlalchemy import select

from bot.dispatch import Dispatcher, store_event
from bot.inbound import Inbound
from bot.tasks import TaskTracker
from core.models import OutboxMessage

# A real 1×1 PNG.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAAB"
                       "JRU5ErkJggg==")


class Chat:
    """Console events handled one by one by a dispatcher; the outbox rows each event queued."""

    def __init__(self, db, settings, at: datetime | None = None) -> None:
        self.db, self.tracker, self.at = db, TaskTracker(), at
        self.d = Dispatcher(db, settings, self.tracker, clock=lambda: self.at or datetime.now(UTC))

    async def send(self, user: str, body: str | None = None, *, click: str | None = None,
                   key: str | None = None, image: bytes | None = None, scan: str | None = None) -> list[dict]:
        pic = {"data": base64.b64encode(image).decode(), "content_type": "image/png"} if image is not None else None
        event = Inbound("console", user, key or f"console:{uuid.uuid4().hex}", self.at or datetime.now(UTC),
                        text=body, action=click, image=pic, scan=scan)
        await self.db.write(lambda s: store_event(s, event))
        await self.d.handle(event)
        return await self.queued(event.dedupe_key)

    async def queued(self, key: str) -> list[dict]:
        async with self.db.read() as s:
            rows = (await s.execute(select(OutboxMessage).where(OutboxMessage.dedupe_key.like(f"reply:{key}:%"))
                                    .order_by(OutboxMessage.id))).scalars().all()
        return [{"to": json.loads(r.target)["address"], **json.loads(r.message)} for r in rows]

    async def close(self) -> None:
        await self.tracker.close()
        await self.d.close()


def reply(rows: list[dict], user: str) -> dict:
    """The first message queued for `user`."""
    mine = [r for r in rows if r["to"] == user]
    assert mine, rows
    return mine[0]
