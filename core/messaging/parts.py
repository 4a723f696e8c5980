"""Multi-part messages: one outbox row per platform send, keyed key, key#2, …, sent once each and in order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["PART", "Part", "part_key"]

PART = "part"  # key of the marker in a part's stored message JSON: {"key": dedupe key of part 1, "n": 2, "of": 3}


@dataclass(frozen=True)
class Part:
    """Part n of `of` of a message queued under `key` (part 1's dedupe key; part n's is part_key(key, n))."""

    key: str
    n: int
    of: int

    @property
    def previous(self) -> str | None:
        """The dedupe key of the part that must be delivered before this one (None for part 1)."""
        return part_key(self.key, self.n - 1) if self.n > 1 else None

    @classmethod
    def of_row(cls, message: Mapping[str, Any]) -> Part | None:
        """The marker of a stored outbox message, or None for a message of one part (or a malformed marker)."""
        marker = message.get(PART)
        if not isinstance(marker, Mapping):
            return None
        key, n, of = marker.get("key"), marker.get("n"), marker.get("of")
        if not isinstance(key, str) or not isinstance(n, int) or not isinstance(of, int) or not 1 <= n <= of:
            return None
        return cls(key, n, of)


def part_key(key: str, n: int) -> str:
    """The dedupe key of part n: the message's own key for part 1, then key#2, key#3 …"""
    return key if n == 1 else f"{key}#{n}"
