"""Domain errors: a code, a Chinese message, a Chinese fix and the offending fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class DomainError(Exception):
    """A business rule refused an action; nothing was changed."""

    def __init__(self, code: str, message_zh: str, fix_zh: str, fields: dict[str, Any] | None = None):
        super().__init__(f"{code}: {message_zh}")
        self.code = code
        self.message_zh = message_zh
        self.fix_zh = fix_zh
        self.fields = fields or {}

    def __str__(self) -> str:
        return f"{self.message_zh}（{self.code}）处理办法：{self.fix_zh}"


@dataclass(frozen=True)
class CheckResult:
    """One failed posting check, reported as an error (strict) or a warning (loose)."""

    code: str
    message_zh: str
    fix_zh: str
    fields: dict[str, Any] = field(default_factory=dict)
    warning: bool = False

    def to_error(self) -> DomainError:
        """The check as a raisable DomainError."""
        return DomainError(self.code, self.message_zh, self.fix_zh, self.fields)
