"""Import outcomes: per-row errors (row, column, Chinese fix), the all-or-nothing failure and the report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RowError:
    """One bad cell: spreadsheet row (header = 1), column key, what is wrong and how to fix it (Chinese)."""

    row: int
    column: str
    message_zh: str
    fix_zh: str

    def __str__(self) -> str:
        where = f"第 {self.row} 行" + (f" [{self.column}]" if self.column else "")
        return f"{where}：{self.message_zh} → {self.fix_zh}"


class ImportFailed(Exception):
    """The file had errors; nothing was written. `errors` lists every bad row."""

    def __init__(self, errors: Sequence[RowError]) -> None:
        self.errors: list[RowError] = sorted(errors, key=lambda e: e.row)
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = [f"导入失败：共 {len(self.errors)} 处错误，未写入任何数据。请修改后重新导入整个文件。"]
        lines += [f"  {e}" for e in self.errors[:10]]
        if len(self.errors) > 10:
            lines.append(f"  ……另有 {len(self.errors) - 10} 处错误")
        return "\n".join(lines)


@dataclass(frozen=True)
class ImportReport:
    """What an import did: data rows read, records created and updated, opening documents created."""

    kind: str
    rows: int
    created: int
    updated: int
    documents: tuple[str, ...] = ()
