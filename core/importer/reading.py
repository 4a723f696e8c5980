"""Reading .xlsx and .csv files into rows keyed by column, matching the header row to the column specs."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from core.errors import DomainError
from core.importer.results import ImportFailed, RowError
from core.importer.specs import Column, header


@dataclass(frozen=True)
class _Row:
    row: int
    values: dict[str, str]  # key → trimmed text; a key is absent when its column is not in the file


@dataclass(frozen=True)
class _Table:
    columns: frozenset[str]
    rows: list[_Row]


def _norm_header(text: str) -> str:
    t = unicodedata.normalize("NFKC", text)
    return re.sub(r"\s+", "", t).strip("*").lower()


def _cell_text(value: Any) -> str:
    """A cell as text: integral floats lose '.0', dates become YYYY-MM-DD, strings are trimmed."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        return str(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value).replace("\u3000", " ").replace("\xa0", " ").replace("\ufeff", "").strip()


def _read_raw(path: Path) -> list[tuple[int, list[Any]]]:
    """(spreadsheet row number, cells) of every row of the first data sheet or the CSV."""
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook

        try:
            wb = load_workbook(path, read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises many types for a broken file
            raise DomainError("IMPORT_BAD_FILE", f"无法读取 Excel 文件 {path.name}（{type(exc).__name__}）",
                              "请确认文件未损坏、不是加密文件，并另存为 .xlsx 后重试", {"path": str(path)}) from None
        try:
            sheets = [ws for ws in wb.worksheets if ws.title != "说明"] or wb.worksheets
            return [(i, list(r)) for i, r in enumerate(sheets[0].iter_rows(values_only=True), start=1)]
        finally:
            wb.close()
    if suffix == ".csv":
        data = path.read_bytes()
        for encoding in ("utf-8-sig", "gb18030"):
            try:
                text = data.decode(encoding)
                break
            except UnicodeDecodeError:
                continue
        else:
            raise DomainError("IMPORT_ENCODING", f"无法识别 {path.name} 的文字编码",
                              "请在 Excel 中「另存为」→「CSV UTF-8（逗号分隔）」后重试", {"path": str(path)})
        reader = csv.reader(io.StringIO(text, newline=""))
        return [(i, r) for i, r in enumerate(reader, start=1)]
    if suffix == ".xls":
        raise DomainError("IMPORT_FORMAT", f"不支持旧版 Excel 文件 {path.name}（.xls）",
                          "请在 Excel 中另存为 .xlsx（Excel 工作簿）或 CSV 后重新导入", {"path": str(path)})
    raise DomainError("IMPORT_FORMAT", f"不支持的文件类型「{path.suffix or path.name}」",
                      "请使用 .xlsx（Excel 工作簿）或 .csv 文件，可用 jxcbot template 生成模板", {"path": str(path)})


def _read_table(cols: Sequence[Column], path: Path) -> _Table:
    """Match the header row to the columns and return the non-empty data rows; ImportFailed on header errors."""
    raw = [(n, [_cell_text(v) for v in cells]) for n, cells in _read_raw(Path(path))]
    raw = [(n, cells) for n, cells in raw if any(cells)]
    if not raw:
        raise ImportFailed([RowError(1, "", "文件是空的，没有表头",
                                     "请用 jxcbot template 生成模板，在第 1 行保留表头后填写")])
    head_no, head = raw[0]
    lookup: dict[str, Column] = {}
    for c in cols:
        for name in (header(c.key, c.zh), c.key, c.zh):
            lookup[_norm_header(name)] = c
    errors: list[RowError] = []
    index: dict[int, str] = {}
    seen: dict[str, int] = {}
    for i, text in enumerate(head):
        if not text:
            continue
        col = lookup.get(_norm_header(text))
        if col is None:
            errors.append(RowError(head_no, text, f"无法识别的列「{text}」",
                                   "请使用模板中的列名，可用列：" + "、".join(header(c.key, c.zh) for c in cols)))
            continue
        if col.key in seen:
            errors.append(RowError(head_no, col.key, f"列「{header(col.key, col.zh)}」出现了两次",
                                   "请删除重复的列"))
            continue
        seen[col.key] = i
        index[i] = col.key
    for c in cols:
        if c.required and c.key not in seen:
            errors.append(RowError(head_no, c.key, f"缺少必填列「{header(c.key, c.zh)}」",
                                   f"请在表头加上该列，可写「{header(c.key, c.zh)}」、「{c.key}」或「{c.zh}」"))
    if errors:
        raise ImportFailed(errors)
    rows = []
    for n, cells in raw[1:]:
        values = {key: (cells[i] if i < len(cells) else "") for i, key in index.items()}
        if any(values.values()):
            rows.append(_Row(n, values))
    if not rows:
        raise ImportFailed([RowError(head_no + 1, "", "文件只有表头，没有数据行", "请从表头下一行开始填写数据")])
    return _Table(frozenset(seen), rows)
