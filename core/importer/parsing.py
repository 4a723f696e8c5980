"""Cell value parsers (yes/no, numbers, dates) that raise _Bad with a Chinese message and fix."""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from core.ledger.dates import match_date

_TRUE = frozenset({"是", "true", "1", "y", "yes"})
_FALSE = frozenset({"否", "false", "0", "n", "no"})


class _Bad(Exception):
    def __init__(self, message_zh: str, fix_zh: str) -> None:
        super().__init__(message_zh)
        self.message_zh = message_zh
        self.fix_zh = fix_zh


_ABSENT: Any = object()  # the column is not in the file
_INVALID: Any = object()  # the value was bad (an error was recorded)


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip()


def _bool(text: str) -> bool:
    t = _nfkc(text).lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise _Bad(f"「{text}」不是有效的是/否值", "请填写 是 或 否（也可用 true/false、1/0、y/n、yes/no）")


def _decimal(text: str) -> Decimal:
    t = _nfkc(text)
    if re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?", t):
        t = t.replace(",", "")
    try:
        d = Decimal(t)
    except (InvalidOperation, ValueError):
        raise _Bad(f"「{text}」不是数字", "请填写数字，例如 12 或 1.5（不要带单位或其它文字）") from None
    if not d.is_finite():
        raise _Bad(f"「{text}」不是有效数字", "请填写普通数字，例如 12 或 1.5")
    return d


def _nonneg_int(text: str) -> int:
    d = _decimal(text)
    if d < 0 or d != d.to_integral_value():
        raise _Bad(f"「{text}」不是非负整数", "请填写 0 或正整数，例如 3")
    return int(d)


def _nonneg_dec(text: str) -> Decimal:
    d = _decimal(text)
    if d < 0:
        raise _Bad(f"「{text}」不能为负数", "请填写 0 或正数")
    return d


def _date(text: str) -> date:
    if (found := match_date(text)) is not None:
        return found
    raise _Bad(f"「{text}」不是有效日期", "请写成 YYYY-MM-DD，例如 2027-05-01")
