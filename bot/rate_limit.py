"""Per-target sliding-window rate limits for outgoing messages (WeCom robot 20/min, app 30/min per user …)."""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType

from core.messaging.targets import Target


@dataclass(frozen=True)
class RateLimit:
    """At most `count` sends to one target in any `seconds`-long window."""

    count: int
    seconds: float

    def __post_init__(self) -> None:
        if self.count < 1 or self.seconds <= 0:
            raise ValueError(f"bad rate limit {self.count}/{self.seconds}s")


# Keyed "platform:kind" (see bot.transport.Target); kinds not listed are not limited here.
DEFAULT_LIMITS: Mapping[str, tuple[RateLimit, ...]] = MappingProxyType({
    "wecom:robot": (RateLimit(20, 60),),
    "wecom:user": (RateLimit(30, 60), RateLimit(1000, 3600)),  # beyond these WeCom drops messages silently
    "dingtalk:robot": (RateLimit(20, 60),),  # beyond this the robot is blocked for 10 minutes
})


class RateLimiter:
    """A log of recent send times per target (Target.rate_key) and blocks the platform asked for.

    One process's view: each sender instance keeps its own log (seeded from the outbox at start)."""

    def __init__(self, limits: Mapping[str, Sequence[RateLimit]] = DEFAULT_LIMITS) -> None:
        self._limits = {kind: tuple(windows) for kind, windows in limits.items()}
        self._log: dict[str, list[float]] = {}
        self._blocked: dict[str, float] = {}

    def windows(self, target: Target) -> tuple[RateLimit, ...]:
        """The limits that apply to a target (none for kinds not listed)."""
        return self._limits.get(f"{target.platform}:{target.kind}", ())

    def reserve(self, target: Target, now: datetime) -> datetime | None:
        """Take a slot for one send now (None), or say when the next slot frees (nothing is taken)."""
        t = now.timestamp()
        key = target.rate_key
        free = self._blocked.get(key, t)
        windows = self.windows(target)
        log = self._log.get(key, [])
        if windows and log:
            del log[: bisect.bisect_right(log, t - max(w.seconds for w in windows))]
            for w in windows:
                if len(log) - bisect.bisect_right(log, t - w.seconds) >= w.count:
                    free = max(free, log[len(log) - w.count] + w.seconds)
        if free > t:
            return datetime.fromtimestamp(free, UTC)
        self._blocked.pop(key, None)
        if windows:
            bisect.insort(self._log.setdefault(key, log), t)
        return None

    def unreserve(self, target: Target, at: datetime) -> None:
        """Give back a slot `reserve` took at `at` that was not used (the send did not happen)."""
        log = self._log.get(target.rate_key)
        t = at.timestamp()
        if log:
            i = bisect.bisect_left(log, t)
            if i < len(log) and log[i] == t:
                del log[i]

    def record(self, target: Target, at: datetime) -> None:
        """Count a send made earlier (by a previous run of the sender)."""
        if self.windows(target):
            bisect.insort(self._log.setdefault(target.rate_key, []), at.timestamp())

    def block(self, target: Target, until: datetime) -> None:
        """No sends to this target before `until` (the platform said to wait)."""
        key = target.rate_key
        self._blocked[key] = max(self._blocked.get(key, 0.0), until.timestamp())

    @property
    def longest_window(self) -> float:
        """Seconds of history that matter (how far back to seed from the outbox)."""
        return max((w.seconds for ws in self._limits.values() for w in ws), default=0.0)
