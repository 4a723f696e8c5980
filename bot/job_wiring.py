"""The scheduler's dependencies as the server and the CLI build them: the declared jobs with their [jobs.<name>]
configuration, and the Deps of a run (database, outbound, admin targets, this process as the owner)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

import jobs as _jobs  # noqa: F401  (registers the jobs)
from cards.model import Message
from core.approvals.views import approval_view
from core.config import Settings
from core.messaging.outbound import Outbound
from core.messaging.recipients import Recipient, ToRole
from core.messaging.targets import Target
from core.storage import Database
from handlers.approval_cards import approval_card
from jobs.config import Scheduled, scheduled
from jobs.runner import Deps


def scheduled_jobs(settings: Settings) -> list[Scheduled]:
    """Every job with its configuration (ConfigError naming the key when [jobs.<name>] is wrong)."""
    return scheduled(settings.raw, settings.timezone)


async def notify_approvers(session: AsyncSession, settings: Settings, number: str) -> list[tuple[Recipient, Message]]:
    """The approval cards of a document a job submitted, one per role whose turn it is (the holders get theirs),
    built by the same handler code the chat path uses."""
    view = await approval_view(session, number)
    return [(ToRole(role), approval_card(view, settings.timezone, role, headline="系统自动提交，请审批"))
            for role in view.roles_to_ask()]


def deps(settings: Settings, db: Database, outbound: Outbound, items: Sequence[Scheduled],
         admin_targets: Sequence[Target] = (), clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Deps:
    """A run's dependencies; the owner names this process (host:pid) in the job_runs ledger."""
    return Deps(db, settings, outbound, owner=f"{socket.gethostname()}:{os.getpid()}"[:64],
                admin_targets=tuple(admin_targets), channels={i.job.name: i.channel for i in items}, clock=clock,
                extras={"notify_approvers": notify_approvers})
