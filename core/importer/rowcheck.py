"""Per-row validation helpers that record RowErrors: typed cell access, in-file duplicates, unique-value owners."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from core.importer.parsing import _ABSENT, _INVALID, _Bad
from core.importer.reading import _Row
from core.importer.results import RowError
from core.importer.specs import _EXTRA_COLUMNS, _MAXLEN, COLUMNS


class _Cells:
    """Typed access to one row's cells that records every problem as a RowError."""

    def __init__(self, kind: str, row: _Row, errors: list[RowError]) -> None:
        self.kind = kind
        self.row = row
        self.errors = errors
        self.cols = {c.key: c for c in (COLUMNS.get(kind) or _EXTRA_COLUMNS[kind])}

    def error(self, key: str, message_zh: str, fix_zh: str) -> None:
        self.errors.append(RowError(self.row.row, key, message_zh, fix_zh))

    def text(self, key: str) -> str | None:
        """Trimmed text; None when the column is not in the file; checks required and length."""
        if key not in self.row.values:
            return None
        value = self.row.values[key]
        col = self.cols[key]
        if col.required and not value:
            self.error(key, f"「{col.zh}」不能为空", f"请填写{col.zh}：{col.help_zh}")
        limit = _MAXLEN.get(self.kind, {}).get(key)
        if limit and len(value) > limit:
            self.error(key, f"「{col.zh}」太长（{len(value)} 个字符，最多 {limit} 个）", f"请缩短{col.zh}")
        return value

    def parse(self, key: str, fn: Callable[[str], Any]) -> Any:
        """_ABSENT when the column is missing, None when blank, the parsed value, or _INVALID."""
        text = self.text(key)
        if text is None:
            return _ABSENT
        if not text:
            return None
        try:
            return fn(text)
        except _Bad as bad:
            self.error(key, f"{self.cols[key].zh}{bad.message_zh}", bad.fix_zh)
            return _INVALID

    def fill(self, attrs: dict[str, Any], specs: Iterable[tuple[str, Callable[[str], Any], Any]],
             is_new: bool) -> None:
        """Parse each (key, parser, default) into attrs: a blank cell takes the default, and so does a
        missing column for a new record (an existing record keeps its value)."""
        for key, fn, default in specs:
            value = self.parse(key, fn)
            if value is _ABSENT:
                if is_new:
                    attrs[key] = default
            else:
                attrs[key] = default if value is None else value


def _duplicates(rows: Iterable[tuple[_Row, str]], key: str, what: str, errors: list[RowError], fix: str) -> None:
    """Report every row whose value appears more than once (blank values are ignored)."""
    where: dict[str, list[int]] = defaultdict(list)
    for row, value in rows:
        if value:
            where[value].append(row.row)
    for value, nums in where.items():
        if len(nums) > 1:
            listed = "、".join(str(n) for n in nums)
            for n in nums:
                errors.append(RowError(n, key, f"{what}「{value}」在文件中重复出现（第 {listed} 行）", fix))


def _final_owner_conflict(holder_key: str, this_key: str, value: str, file_values: dict[str, str | None]) -> bool:
    """True when a DB record other than this one still holds `value` after the import."""
    if holder_key == this_key:
        return False
    return not (holder_key in file_values and file_values[holder_key] != value)
