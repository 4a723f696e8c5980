"""The scheduler's dependencies as the server and the CLI build them: the declared jobs with their [jobs.<name>]
configuration, and the Deps of a run (database, outbound, admin targets, this process as the owner)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import jobs as _jobs  # noqa: F401  (registers the jobs)
from core.config import Settings
from core.messaging.outbound import Outbound
from core.messaging.targets import Target
from core.storage import Database
from jobs.config import Scheduled, scheduled
from jobs.runner import Deps


def scheduled_jobs(settings: Settings) -> list[Scheduled]:
    """Every job with its configuration (ConfigError naming the key when [jobs.<name>] is wrong)."""
    return scheduled(settings.raw, settings.timezone)


def deps(settings: Settings, db: Database, outbound: Outbound, items: Sequence[Scheduled],
         admin_targets: Sequence[Target] = (), clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Deps:
    """A run's dependencies; the owner names this process (host:pid) in the job_runs ledger."""
    return Deps(db, settings, outbound, owner=f"{socket.gethostname()}:{os.getpid()}"[:64],
                admin_targets=tuple(admin_targets), channels={i.job.name: i.channel for i in items}, clock=clock)
