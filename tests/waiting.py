"""Polling helper for tests that wait for something a background task does (a reply at a fake, a row)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(predicate: Callable[[], object], what: str, seconds: float = 6.0, step: float = 0.02) -> None:
    """Return once predicate() is truthy; AssertionError naming `what` after `seconds`."""
    for _ in range(max(1, int(seconds / step))):
        if predicate():
            return
        await asyncio.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")
