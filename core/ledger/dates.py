"""Dates as people type them (imports, chat): 2026-12-20, 2026年12月20日, 12-20, 12月20日, 明天, 后天, 5天后."""

from __future__ import annotations

import re
import unicodedata
from datetime import date, timedelta

_RELATIVE = {"今天": 0, "今日": 0, "明天": 1, "明日": 1, "后天": 2}


def match_date(text: str) -> date | None:
    """A date written as people write it (2026-12-01, 2026/12/1, 2026.12.1, 2026年12月1日, 20261201), else None."""
    t = unicodedata.normalize("NFKC", text).strip()
    m = re.fullmatch(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?(?:[ T].*)?", t) or re.fullmatch(
        r"(\d{4})(\d{2})(\d{2})", t
    )
    if m:
        try:
            return date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            pass
    return None


def chat_date(text: str, today: date) -> date | None:
    """The date `text` names (a month and day without a year: this year), else None."""
    t = unicodedata.normalize("NFKC", text).strip()
    if t in _RELATIVE:
        return today + timedelta(days=_RELATIVE[t])
    if m := re.fullmatch(r"(\d{1,3})\s*天后", t):
        return today + timedelta(days=int(m[1]))
    if (full := match_date(t)) is not None:
        return full
    if m := re.fullmatch(r"(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?", t):
        try:
            return date(today.year, int(m[1]), int(m[2]))
        except ValueError:
            return None
    return None
