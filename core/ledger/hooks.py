"""Lifecycle hooks: what a document type does besides moving stock, at submit, post and cancel."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings
from core.ledger.doctypes import DocType
from core.models import Document

HookFn = Callable[[AsyncSession, Settings, Document, datetime], Awaitable[object]]

BEFORE_SUBMIT = "before_submit"  # before draft → submitted (may fill in line values)
AFTER_SUBMIT = "after_submit"  # after the status became submitted
POSTED = "posted"  # after submitted → posted (and after the stock moves)
CANCELLED = "cancelled"  # after a posted document was cancelled (and its finance entries reversed)
EVENTS = (BEFORE_SUBMIT, AFTER_SUBMIT, POSTED, CANCELLED)


@dataclass(frozen=True)
class Hook:
    """The functions one hook name runs at each lifecycle event (None: nothing at that event)."""

    before_submit: HookFn | None = None
    after_submit: HookFn | None = None
    posted: HookFn | None = None
    cancelled: HookFn | None = None
    books: str | None = None  # the finance entry kind its posting writes (payable/receivable), if any


Table = dict[str, dict[str, tuple[HookFn, ...]]]  # event → type code → functions in the type's hook order


def by_event(types: Iterable[DocType], registered: Mapping[str, Hook]) -> Table:
    """Per event and type code the functions to run, built once; KeyError for a hook name nobody registered."""
    types = list(types)
    missing = sorted({name for t in types for name in t.hooks} - registered.keys())
    if missing:
        raise KeyError(f"document type hooks without an implementation: {missing}")
    return {
        event: {
            t.code: tuple(fn for fn in (getattr(registered[name], event) for name in t.hooks) if fn is not None)
            for t in types
        }
        for event in EVENTS
    }


def merge(*tables: Mapping[str, Hook]) -> dict[str, Hook]:
    """One name → Hook mapping from several modules' tables; ValueError when two register the same name."""
    out: dict[str, Hook] = {}
    for table in tables:
        clash = out.keys() & table.keys()
        if clash:
            raise ValueError(f"hook names registered twice: {sorted(clash)}")
        out.update(table)
    return out
