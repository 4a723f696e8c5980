"""Jobs are declared here by decorator: name, title, default schedule (cron, local time), default channel and the
business period a run covers; `[jobs.<name>]` overrides cron, channel and enabled."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

Period = Callable[[datetime], str]  # the fire time (local) → the business period it covers


def day(at: datetime) -> str:
    """The local day of the fire: 2026-12-07."""
    return f"{at:%Y-%m-%d}"


def hour(at: datetime) -> str:
    """The local hour of the fire: 2026-12-07T10."""
    return f"{at:%Y-%m-%dT%H}"


def iso_week(at: datetime) -> str:
    """The ISO week of the fire: 2026-W49."""
    year, week, _ = at.isocalendar()
    return f"{year}-W{week:02d}"


def previous_month(at: datetime) -> str:
    """The month before the fire (a report on the 5th covers the month that ended): 2026-11."""
    first = at.replace(day=1)
    return f"{first - timedelta(days=1):%Y-%m}"


def minute(at: datetime) -> str:
    """The minute of the fire (for jobs every few minutes): 2026-12-07T10:15."""
    return f"{at:%Y-%m-%dT%H:%M}"


@dataclass(frozen=True)
class Job:
    """A scheduled job. run(ctx) does the work and returns a one-line summary (raises on failure)."""

    name: str
    title: str
    cron: str
    period: Period = field(repr=False)
    run: Callable[[Any], Awaitable[str]] = field(repr=False)
    channel: str = ""


JOBS: dict[str, Job] = {}


def job(name: str, *, title: str, cron: str, period: Period, channel: str = "") -> Callable:
    """Declare a job (cron in the configured timezone, five fields: minute hour day month weekday)."""

    def register(fn: Callable[[Any], Awaitable[str]]) -> Callable[[Any], Awaitable[str]]:
        if name in JOBS:
            raise ValueError(f"job already declared: {name!r}")
        JOBS[name] = Job(name, title, cron, period, fn, channel)
        return fn

    return register
