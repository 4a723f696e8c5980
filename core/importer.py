"""Excel/CSV import of products, warehouses, users and opening stock: validate every row, then write all or nothing."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings
from core.documents import LineInput, create_document, post_document, submit_document
from core.errors import DomainError
from core.models import ROLES, Batch, Customer, Document, DocumentLine, Product, Supplier, User, Warehouse, utcnow
from core.units import to_stock_qty

__all__ = [
    "COLUMNS",
    "DEMO_DIR",
    "KINDS",
    "Column",
    "ImportFailed",
    "ImportReport",
    "RowError",
    "header",
    "import_file",
    "load_demo",
    "write_template",
]

KINDS = ("products", "warehouses", "users", "opening")
KIND_ZH = {"products": "商品", "warehouses": "仓库", "users": "用户", "opening": "期初库存"}
DEMO_DIR = Path(__file__).parent / "demo"

PROGRESS_EVERY = 500
Progress = Callable[[int, int], None] | None
_CHUNK = 500  # values per IN (...) query


class Column(NamedTuple):
    """One import column: English key (the contract), Chinese name, required flag and help text."""

    key: str
    zh: str
    required: bool
    help_zh: str


_BOOL_HELP = "填 是 或 否（也可用 true/false、1/0、y/n、yes/no）"

PRODUCT_COLUMNS: list[Column] = [
    Column("sku", "SKU编码", True, "商品唯一编码，已存在的 SKU 会被更新"),
    Column("name", "商品名称", True, "商品名称"),
    Column("barcode", "条码", False, "商品条码，必须唯一；请把该列设为文本格式，避免 Excel 变成科学计数法"),
    Column("category", "分类", False, "商品分类，如 原料、包材、成品"),
    Column("stock_unit", "库存单位", True, "库存与出入库计量的最小单位，如 kg、瓶、个"),
    Column("purchase_unit", "采购单位", False, "采购时用的单位，如 箱、桶、袋；留空表示与库存单位相同"),
    Column("purchase_factor", "换算系数", False,
           "1 个采购单位等于多少库存单位，必须是正整数（如 1箱=24瓶 填 24）；采购单位与库存单位不同时必填"),
    Column("shelf_life_days", "保质期天数", False, "保质期（天），非负整数；留空表示不管理保质期"),
    Column("batch_tracked", "批次管理", False, "是否按批次管理；" + _BOOL_HELP + "；留空为 否"),
    Column("lead_time_days", "采购提前期天数", False, "从下单到到货的天数，非负整数；留空为 0"),
    Column("buffer_days", "缓冲天数", False, "安全库存额外覆盖的天数，非负整数；留空为 0"),
    Column("moq", "最小起订量", False, "最小起订量（按库存单位），≥0 的数字；留空为 0"),
    Column("pack_size", "包装规格", False, "采购数量按此倍数取整（按库存单位），≥0 的数字；留空为 1"),
    Column("auto_replenish", "自动补货", False, "是否参与每日自动采购申请；" + _BOOL_HELP + "；留空为 否"),
    Column("purchaser", "采购负责人", False, "负责该商品采购的用户姓名，必须是已导入的用户；可留空"),
]

WAREHOUSE_COLUMNS: list[Column] = [
    Column("code", "仓库编码", True, "仓库或门店的唯一编码，如 CW、S01；已存在的编码会被更新"),
    Column("name", "仓库名称", True, "仓库或门店名称"),
    Column("allow_negative", "允许负库存", False, "是否允许负库存；" + _BOOL_HELP + "；留空为 否"),
    Column("negative_floor", "负库存下限", False, "允许负库存时最低可到多少，填 0 或负数（如 -5）；留空为 0"),
    Column("ships_to_stores", "可直发门店", False, "能否作为调拨单的调出仓库；" + _BOOL_HELP + "；留空为 是"),
]

USER_COLUMNS: list[Column] = [
    Column("name", "姓名", True, "用户姓名，必须唯一；已存在的姓名会被更新"),
    Column("wecom_user_id", "企业微信ID", False, "企业微信通讯录中的 UserID，必须唯一；可留空"),
    Column("dingtalk_staff_id", "钉钉ID", False, "钉钉通讯录中的 userid（staffId），必须唯一；可留空"),
    Column("department", "部门", False, "所在部门"),
    Column("roles", "角色", True,
           "一个或多个角色，用逗号分隔：warehouse（库管）、purchasing（采购）、sales（销售）、manager（主管）、"
           "admin（管理员），也可直接写中文"),
]

OPENING_COLUMNS: list[Column] = [
    Column("sku", "SKU编码", True, "商品 SKU，必须已在商品档案中"),
    Column("warehouse", "仓库编码", True, "仓库或门店编码（或名称），必须已在仓库档案中"),
    Column("qty", "数量", True, "期初数量，必须大于 0；按「单位」列的单位计"),
    Column("unit", "单位", True, "数量的单位：该商品的库存单位或采购单位。必填，不会默认为最小单位"),
    Column("batch", "批次号", False, "批次号；批次管理的商品必填"),
    Column("expiry", "到期日", False, "批次到期日，格式 YYYY-MM-DD（如 2027-05-01），不能早于今天；需同时填写批次号"),
    Column("unit_cost", "单位成本", False, "每个「单位」的成本（元），≥0；可留空"),
]

COLUMNS: dict[str, list[Column]] = {
    "products": PRODUCT_COLUMNS,
    "warehouses": WAREHOUSE_COLUMNS,
    "users": USER_COLUMNS,
    "opening": OPENING_COLUMNS,
}

EXAMPLES: dict[str, dict[str, str]] = {
    "products": {
        "sku": "RM-MILK", "name": "全脂牛奶", "barcode": "6901234567892", "category": "原料", "stock_unit": "瓶",
        "purchase_unit": "箱", "purchase_factor": "24", "shelf_life_days": "180", "batch_tracked": "是",
        "lead_time_days": "2", "buffer_days": "1", "moq": "48", "pack_size": "24", "auto_replenish": "是",
        "purchaser": "李采购",
    },
    "warehouses": {"code": "S01", "name": "观前街店", "allow_negative": "是", "negative_floor": "-5",
                   "ships_to_stores": "否"},
    "users": {"name": "王库管", "wecom_user_id": "wangkuguan", "dingtalk_staff_id": "dt_wang01",
              "department": "仓储部", "roles": "warehouse,sales"},
    "opening": {"sku": "RM-MILK", "warehouse": "CW", "qty": "2", "unit": "箱", "batch": "ML20261110",
                "expiry": "2027-05-10", "unit_cost": "96"},
}

# Column width limits of the database (longer values would fail on PostgreSQL).
_MAXLEN: dict[str, dict[str, int]] = {
    "products": {"sku": 64, "name": 200, "barcode": 64, "category": 64, "stock_unit": 16, "purchase_unit": 16,
                 "purchaser": 64},
    "warehouses": {"code": 32, "name": 100},
    "users": {"name": 64, "wecom_user_id": 64, "dingtalk_staff_id": 64, "department": 64},
    "opening": {"batch": 64},
    "customers": {"code": 32, "name": 100},
    "suppliers": {"code": 32, "name": 100},
}

ROLE_ZH = {"warehouse": "库管", "purchasing": "采购", "sales": "销售", "manager": "主管", "admin": "管理员"}
_ROLE_ALIASES = {**{r: r for r in ROLES}, **{zh: r for r, zh in ROLE_ZH.items()}, "经理": "manager"}
_ROLES_HELP = "、".join(f"{r}（{zh}）" for r, zh in ROLE_ZH.items())

_TRUE = frozenset({"是", "true", "1", "y", "yes"})
_FALSE = frozenset({"否", "false", "0", "n", "no"})


# --------------------------------------------------------------------------------------------- results


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


# --------------------------------------------------------------------------------------------- templates


def header(key: str, zh: str) -> str:
    """The template header of a column, e.g. '库存单位 (stock_unit)'."""
    return f"{zh} ({key})"


def _columns(kind: str) -> list[Column]:
    if kind not in COLUMNS:
        raise DomainError("IMPORT_KIND", f"未知的导入类型「{kind}」",
                          "可用类型：" + "、".join(f"{k}（{KIND_ZH[k]}）" for k in KINDS), {"kind": kind})
    return COLUMNS[kind]


def _display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


_TEXT_COLUMNS = {"sku", "barcode", "code", "wecom_user_id", "dingtalk_staff_id", "batch", "warehouse"}

_NOTES = [
    "第 1 行是表头，请勿修改或删除；从第 2 行开始每行填写一条记录。",
    "表头可以写成模板中的样子「库存单位 (stock_unit)」，也可以只写英文键 stock_unit 或中文名 库存单位。",
    "整个文件要么全部导入，要么全部不导入：只要有一行有错，就不会写入任何数据，并列出所有错误行。",
    "完全空白的行会被跳过。CSV 文件请用 UTF-8 或 GBK 编码保存。",
]
_KIND_NOTES = {
    "products": ["已存在的 SKU 会被更新：表中留空的单元格按默认值处理；表中没有的列保持原值不变。",
                 "已有单据的商品不能修改库存单位（避免 g 与 kg 混淆），请新建 SKU。"],
    "warehouses": ["已存在的仓库编码会被更新。负库存下限只在「允许负库存」为 是 时有效。"],
    "users": ["已存在的姓名会被更新。企业微信ID、钉钉ID 各自不能重复。"],
    "opening": ["单位必须填写：库存单位或采购单位。单位为空的行会报错，绝不默认为最小单位（g 与 kg 之误）。",
                "每个仓库生成一张期初单；同一商品在同一仓库只能导入一次期初。",
                "个、瓶、箱等计件单位的数量必须是整数。"],
}


def write_template(kind: str, path: Path) -> None:
    """Write an import template: .xlsx (headers + a 说明 sheet) or .csv (UTF-8 with BOM)."""
    cols = _columns(kind)
    path = Path(path)
    suffix = path.suffix.lower()
    headers = [header(c.key, c.zh) for c in cols]
    if suffix == ".csv":
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\r\n").writerow(headers)
        path.write_text(buf.getvalue(), encoding="utf-8-sig")
        return
    if suffix != ".xlsx":
        raise DomainError("TEMPLATE_FORMAT", f"不支持的模板格式「{path.suffix or path.name}」",
                          "请把文件名改为以 .xlsx 或 .csv 结尾", {"path": str(path)})
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    ws = wb.active
    ws.title = KIND_ZH[kind]
    ws.append(headers)
    bold = Font(bold=True)
    fill = PatternFill("solid", fgColor="DDEBF7")
    required_fill = PatternFill("solid", fgColor="FCE4D6")
    for i, (col, text) in enumerate(zip(cols, headers, strict=True), start=1):
        cell = ws.cell(row=1, column=i)
        cell.font = bold
        cell.fill = required_fill if col.required else fill
        letter = get_column_letter(i)
        ws.column_dimensions[letter].width = max(12, _display_width(text) + 4)
        if col.key in _TEXT_COLUMNS:
            ws.column_dimensions[letter].number_format = "@"  # keep barcodes/codes as text in Excel
    ws.freeze_panes = "A2"

    info = wb.create_sheet("说明")
    info.append([f"{KIND_ZH[kind]}导入模板说明（{kind}）"])
    info["A1"].font = Font(bold=True, size=13)
    for note in _NOTES + _KIND_NOTES[kind]:
        info.append([note])
    info.append([])
    info.append(["表头", "必填", "说明（格式）", "示例"])
    head_row = info.max_row
    for cell in info[head_row]:
        cell.font = bold
        cell.fill = fill
    example = EXAMPLES[kind]
    for col, text in zip(cols, headers, strict=True):
        info.append([text, "必填" if col.required else "可选", col.help_zh, example.get(col.key, "")])
    for letter, width in zip("ABCD", (28, 8, 80, 20), strict=True):
        info.column_dimensions[letter].width = width
    for row in info.iter_rows(min_row=head_row + 1):
        row[2].alignment = Alignment(wrap_text=True, vertical="top")
    wb.save(path)


# --------------------------------------------------------------------------------------------- reading


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


# --------------------------------------------------------------------------------------------- parsing


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
    t = _nfkc(text)
    m = re.fullmatch(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?(?:[ T].*)?", t) or re.fullmatch(
        r"(\d{4})(\d{2})(\d{2})", t
    )
    if m:
        try:
            return date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            pass
    raise _Bad(f"「{text}」不是有效日期", "请写成 YYYY-MM-DD，例如 2027-05-01")


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


async def _fetch_in(session: AsyncSession, stmt_for: Callable[[list[Any]], Any], values: Iterable[Any]) -> list[Any]:
    """Run stmt_for(chunk) over the distinct values in chunks and collect the scalars."""
    distinct = sorted({v for v in values if v not in (None, "")})
    out: list[Any] = []
    for i in range(0, len(distinct), _CHUNK):
        out += list(await session.scalars(stmt_for(distinct[i : i + _CHUNK])))
    return out


def _tick(progress: Progress, done: int, total: int) -> None:
    if progress is not None and (done % PROGRESS_EVERY == 0 or done == total):
        progress(done, total)


def _final_owner_conflict(holder_key: str, this_key: str, value: str, file_values: dict[str, str | None]) -> bool:
    """True when a DB record other than this one still holds `value` after the import."""
    if holder_key == this_key:
        return False
    return not (holder_key in file_values and file_values[holder_key] != value)


# --------------------------------------------------------------------------------------------- products


_SCI = re.compile(r"[+-]?\d+(\.\d+)?[eE][+-]?\d+")


async def _check_products(session: AsyncSession, table: _Table, errors: list[RowError],
                          progress: Progress) -> list[tuple[Product | None, dict[str, Any]]]:
    rows = table.rows
    skus = [(r, r.values.get("sku", "")) for r in rows]
    _duplicates(skus, "sku", "SKU", errors, "每个 SKU 只能出现一次，请删除或合并重复的行")
    has_barcode = "barcode" in table.columns
    if has_barcode:
        _duplicates(((r, r.values["barcode"]) for r in rows), "barcode", "条码", errors,
                    "条码必须唯一，请核对这些行的条码")
    existing = {p.sku: p for p in await _fetch_in(session, lambda c: select(Product).where(Product.sku.in_(c)),
                                                   (s for _, s in skus))}
    holders: dict[str, Product] = {}
    file_barcodes: dict[str, str | None] = {}
    if has_barcode:
        file_barcodes = {r.values.get("sku", ""): (r.values["barcode"] or None) for r in rows}
        holders = {p.barcode: p for p in await _fetch_in(
            session, lambda c: select(Product).where(Product.barcode.in_(c)), file_barcodes.values())}
    purchasers = {u.name: u for u in await _fetch_in(
        session, lambda c: select(User).where(User.name.in_(c)), (r.values.get("purchaser") for r in rows))}
    used = set(await _fetch_in(
        session, lambda c: select(DocumentLine.product_id).where(DocumentLine.product_id.in_(c)).distinct(),
        (p.id for p in existing.values())))

    plan: list[tuple[Product | None, dict[str, Any]]] = []
    for n, row in enumerate(rows, start=1):
        c = _Cells("products", row, errors)
        before = len(errors)
        sku, name, stock_unit = c.text("sku") or "", c.text("name") or "", c.text("stock_unit") or ""
        current = existing.get(sku)
        attrs: dict[str, Any] = {"sku": sku, "name": name, "stock_unit": stock_unit}
        if current is not None and stock_unit and stock_unit != current.stock_unit and current.id in used:
            c.error("stock_unit",
                    f"商品 {sku} 已有单据记录，不能把库存单位从「{current.stock_unit}」改为「{stock_unit}」",
                    f"改库存单位会改变历史数量的含义（如 g 与 kg）；请保持「{current.stock_unit}」，或新建一个 SKU")
        barcode = c.text("barcode")
        if barcode is not None:
            attrs["barcode"] = barcode or None
            if barcode and _SCI.fullmatch(barcode):
                c.error("barcode", f"条码「{barcode}」被 Excel 转成了科学计数法",
                        "请把条码列设为「文本」格式后重新输入完整条码")
            holder = holders.get(barcode) if barcode else None
            if holder is not None and _final_owner_conflict(holder.sku, sku, barcode, file_barcodes):
                c.error("barcode", f"条码「{barcode}」已被商品 {holder.sku}「{holder.name}」使用",
                        f"条码必须唯一：请核对条码，或在本文件中同时修改 {holder.sku} 的条码")
        category = c.text("category")
        if category is not None:
            attrs["category"] = category
        # purchase unit and factor: never guess a factor for a different unit
        pu = c.text("purchase_unit")
        pf = c.parse("purchase_factor", _positive_factor)
        if pu is None and current is not None and pf is _ABSENT:
            pass  # neither column present: keep the existing purchase unit and factor
        else:
            if pu is None and current is not None:
                pu = current.purchase_unit
            if not pu or pu == stock_unit:
                if pf not in (_ABSENT, None, _INVALID, 1):
                    c.error("purchase_factor", f"采购单位与库存单位相同（{stock_unit}），换算系数只能为 1，而不是 {pf}",
                            "请把换算系数改为 1 或留空；如按箱采购，请在「采购单位」填写 箱")
                attrs["purchase_unit"], attrs["purchase_factor"] = stock_unit, 1
            else:
                if pf in (_ABSENT, None):
                    if pf is _ABSENT and current is not None and current.purchase_unit == pu:
                        pf = current.purchase_factor
                    else:
                        c.error("purchase_factor",
                                f"采购单位「{pu}」与库存单位「{stock_unit}」不同，但没有填写换算系数",
                                f"请填写 1{pu} 等于多少{stock_unit}（正整数，如 24）；系统不会猜测换算系数")
                attrs["purchase_unit"], attrs["purchase_factor"] = pu, pf
        defaults: dict[str, tuple[Callable[[str], Any], Any]] = {
            "shelf_life_days": (_nonneg_int, None),
            "batch_tracked": (_bool, False),
            "lead_time_days": (_nonneg_int, 0),
            "buffer_days": (_nonneg_int, 0),
            "moq": (_nonneg_dec, Decimal(0)),
            "pack_size": (_nonneg_dec, Decimal(1)),
            "auto_replenish": (_bool, False),
        }
        for key, (fn, default) in defaults.items():
            value = c.parse(key, fn)
            if value is _ABSENT:
                if current is None:
                    attrs[key] = default
            else:
                attrs[key] = default if value is None else value
        purchaser = c.text("purchaser")
        if purchaser is not None:
            user = purchasers.get(purchaser) if purchaser else None
            if purchaser and user is None:
                c.error("purchaser", f"找不到采购负责人「{purchaser}」", "请填写已导入用户的姓名（先导入用户），或留空")
            attrs["purchaser_id"] = user.id if user else None
        if len(errors) == before:
            plan.append((current, attrs))
        _tick(progress, n, len(rows))
    return plan


def _positive_factor(text: str) -> int:
    d = _decimal(text)
    if d <= 0 or d != d.to_integral_value():
        raise _Bad(f"「{text}」不是正整数",
                   "换算系数必须是正整数，如 1箱=24瓶 填 24；若换算不是整数，请改用更小的库存单位")
    return int(d)


async def _write_products(session: AsyncSession, plan: list[tuple[Product | None, dict[str, Any]]]) -> tuple[int, int]:
    # Clear barcodes that move between products first, so a swap does not trip the unique index.
    moving = [p for p, a in plan if p is not None and "barcode" in a and a["barcode"] != p.barcode and p.barcode]
    for p in moving:
        p.barcode = None
    if moving:
        await session.flush()
    return await _write_simple(session, Product, plan)


# --------------------------------------------------------------------------------------------- warehouses


def _floor(text: str) -> Decimal:
    d = _decimal(text)
    if d > 0:
        raise _Bad(f"不能为正数（{text}）", "填写 0 或负数，如 -50")
    return d


async def _check_warehouses(session: AsyncSession, table: _Table, errors: list[RowError],
                            progress: Progress) -> list[tuple[Warehouse | None, dict[str, Any]]]:
    rows = table.rows
    codes = [(r, r.values.get("code", "")) for r in rows]
    _duplicates(codes, "code", "仓库编码", errors, "每个仓库编码只能出现一次，请删除或合并重复的行")
    existing = {w.code: w for w in await _fetch_in(
        session, lambda c: select(Warehouse).where(Warehouse.code.in_(c)), (v for _, v in codes))}
    plan: list[tuple[Warehouse | None, dict[str, Any]]] = []
    for n, row in enumerate(rows, start=1):
        c = _Cells("warehouses", row, errors)
        before = len(errors)
        code, name = c.text("code") or "", c.text("name") or ""
        current = existing.get(code)
        attrs: dict[str, Any] = {"code": code, "name": name}
        for key, fn, default in (("allow_negative", _bool, False), ("negative_floor", _floor, Decimal(0)),
                                 ("ships_to_stores", _bool, True)):
            value = c.parse(key, fn)
            if value is _ABSENT:
                if current is None:
                    attrs[key] = default
            else:
                attrs[key] = default if value is None else value
        allow = attrs.get("allow_negative", current.allow_negative if current else False)
        floor = attrs.get("negative_floor", current.negative_floor if current else Decimal(0))
        if allow is False and isinstance(floor, Decimal) and floor < 0:
            c.error("negative_floor", f"未允许负库存，但填写了负库存下限 {floor}",
                    "如需允许负库存，请把「允许负库存」填为 是；否则把下限填 0 或留空")
        if len(errors) == before:
            plan.append((current, attrs))
        _tick(progress, n, len(rows))
    return plan


async def _write_simple(session: AsyncSession, model: type, plan: list[tuple[Any, dict[str, Any]]]) -> tuple[int, int]:
    created = updated = 0
    for current, attrs in plan:
        if current is None:
            session.add(model(**attrs))
            created += 1
        else:
            for k, v in attrs.items():
                setattr(current, k, v)
            updated += 1
    await session.flush()
    return created, updated


# --------------------------------------------------------------------------------------------- users


def _roles(text: str) -> str:
    parts = [p for p in re.split(r"[,，、;；/\s]+", _nfkc(text)) if p]
    roles: set[str] = set()
    for p in parts:
        role = _ROLE_ALIASES.get(p.lower()) or _ROLE_ALIASES.get(p)
        if role is None:
            raise _Bad(f"中有未知角色「{p}」", f"可用角色：{_ROLES_HELP}，多个角色用逗号分隔")
        roles.add(role)
    if not roles:
        raise _Bad("为空", f"请至少填写一个角色：{_ROLES_HELP}")
    return ",".join(r for r in ROLES if r in roles)


async def _check_users(session: AsyncSession, table: _Table, errors: list[RowError],
                       progress: Progress) -> list[tuple[User | None, dict[str, Any]]]:
    rows = table.rows
    names = [(r, r.values.get("name", "")) for r in rows]
    _duplicates(names, "name", "姓名", errors, "每个姓名只能出现一次；同名的人请加以区分，如 王芳(仓储)")
    existing = {u.name: u for u in await _fetch_in(
        session, lambda c: select(User).where(User.name.in_(c)), (v for _, v in names))}
    id_cols = {"wecom_user_id": ("企业微信ID", User.wecom_user_id),
               "dingtalk_staff_id": ("钉钉ID", User.dingtalk_staff_id)}
    holders: dict[str, dict[str, User]] = {}
    file_ids: dict[str, dict[str, str | None]] = {}
    for key, (zh, attr) in id_cols.items():
        if key not in table.columns:
            continue
        _duplicates(((r, r.values[key]) for r in rows), key, zh, errors, f"每个{zh}只能属于一个人，请核对")
        file_ids[key] = {r.values.get("name", ""): (r.values[key] or None) for r in rows}
        holders[key] = {getattr(u, key): u for u in await _fetch_in(
            session, lambda c, attr=attr: select(User).where(attr.in_(c)), file_ids[key].values())}
    plan: list[tuple[User | None, dict[str, Any]]] = []
    for n, row in enumerate(rows, start=1):
        c = _Cells("users", row, errors)
        before = len(errors)
        name = c.text("name") or ""
        current = existing.get(name)
        attrs: dict[str, Any] = {"name": name}
        roles = c.parse("roles", _roles)
        if isinstance(roles, str):
            attrs["roles"] = roles
        department = c.text("department")
        if department is not None:
            attrs["department"] = department
        for key, (zh, _attr) in id_cols.items():
            value = c.text(key)
            if value is None:
                continue
            attrs[key] = value or None
            holder = holders[key].get(value) if value else None
            if holder is not None and _final_owner_conflict(holder.name, name, value, file_ids[key]):
                c.error(key, f"{zh}「{value}」已属于用户「{holder.name}」",
                        f"每个{zh}只能属于一个人：请核对，或在本文件中同时修改「{holder.name}」的{zh}")
        if len(errors) == before:
            plan.append((current, attrs))
        _tick(progress, n, len(rows))
    return plan


async def _write_users(session: AsyncSession, plan: list[tuple[User | None, dict[str, Any]]]) -> tuple[int, int]:
    moving = False
    for u, a in plan:
        for k in ("wecom_user_id", "dingtalk_staff_id"):
            if u is not None and k in a and getattr(u, k) and a[k] != getattr(u, k):
                setattr(u, k, None)  # free the id first so a swap does not trip the unique index
                moving = True
    if moving:
        await session.flush()
    return await _write_simple(session, User, plan)


# --------------------------------------------------------------------------------------------- opening


@dataclass(frozen=True)
class _OpeningLine:
    row: int
    warehouse: str
    line: LineInput


def _unit_column(code: str) -> str:
    return "qty" if code == "UNIT_NOT_WHOLE" else "unit"


async def _check_opening(session: AsyncSession, table: _Table, errors: list[RowError], today: date,
                         progress: Progress) -> list[_OpeningLine]:
    rows = table.rows
    products = {p.sku: p for p in await _fetch_in(
        session, lambda c: select(Product).where(Product.sku.in_(c)), (r.values.get("sku") for r in rows))}
    all_wh = list(await session.scalars(select(Warehouse)))
    by_code = {w.code: w for w in all_wh}
    by_name: dict[str, Warehouse | None] = {}
    for w in all_wh:
        by_name[w.name] = None if w.name in by_name else w  # ambiguous names do not resolve
    pairs = sorted({(products[r.values["sku"]].id, r.values.get("batch", ""))
                    for r in rows if r.values.get("sku") in products and r.values.get("batch")})
    batches: dict[tuple[int, str], Batch] = {}
    for i in range(0, len(pairs), _CHUNK):
        stmt = select(Batch).where(tuple_(Batch.product_id, Batch.code).in_(pairs[i : i + _CHUNK]))
        batches.update({(b.product_id, b.code): b for b in await session.scalars(stmt)})
    openings: dict[tuple[int, int], str] = {}
    pids = sorted({p.id for p in products.values()})
    for i in range(0, len(pids), _CHUNK):
        stmt = (
            select(DocumentLine.product_id, DocumentLine.warehouse_id, Document.number)
            .join(Document, Document.id == DocumentLine.document_id)
            .where(Document.type == "opening", Document.status != "cancelled",
                   DocumentLine.product_id.in_(pids[i : i + _CHUNK]))
        )
        for pid, wid, number in (await session.execute(stmt)).all():
            openings.setdefault((pid, wid), number)

    keys: list[tuple[_Row, str]] = []
    file_expiry: dict[tuple[str, str], tuple[int, date | None]] = {}
    plan: list[_OpeningLine] = []
    for n, row in enumerate(rows, start=1):
        c = _Cells("opening", row, errors)
        before = len(errors)
        sku, wh_text = c.text("sku") or "", c.text("warehouse") or ""
        product = products.get(sku)
        if sku and product is None:
            c.error("sku", f"找不到商品「{sku}」", "请核对 SKU，或先导入商品档案（jxcbot import products …）")
        wh = by_code.get(wh_text) or by_name.get(wh_text)
        if wh_text and wh is None:
            c.error("warehouse", f"找不到仓库「{wh_text}」",
                    "请核对仓库编码，可用：" + "、".join(sorted(by_code)[:20]) if by_code else "请先导入仓库档案")
        qty = c.parse("qty", _decimal)
        if isinstance(qty, Decimal):
            if qty < 0:
                c.error("qty", f"期初数量不能为负（{qty}）", "期初库存只能填正数；盘亏请在导入后用盘点或手工调整处理")
            elif qty == 0:
                c.error("qty", "期初数量为 0", "数量为 0 的行无需导入，请删除该行或填写实际数量")
        unit = row.values.get("unit", "")
        if product is None:
            c.text("unit")  # reports a blank unit as a missing required value
        elif not unit:  # never default to a unit: this is the g-vs-kg mistake
            c.error("unit", f"商品 {sku}「{product.name}」的单位为空",
                    f"请填写单位：库存单位「{product.stock_unit}」或采购单位「{product.purchase_unit}」"
                    "（按数量实际对应的单位），系统不会默认为最小单位")
        else:
            try:
                to_stock_qty(product, unit, qty if isinstance(qty, Decimal) and qty > 0 else Decimal(1))
            except DomainError as e:
                c.error(_unit_column(e.code), e.message_zh, e.fix_zh)
        batch = c.text("batch") or ""
        if product is not None and product.batch_tracked and not batch:
            c.error("batch", f"商品 {sku}「{product.name}」按批次管理，缺少批次号",
                    "请填写批次号（如生产日期 20261120）和到期日")
        expiry = c.parse("expiry", _date)
        if isinstance(expiry, date):
            if expiry < today:
                c.error("expiry", f"到期日 {expiry} 已过（今天是 {today}）",
                        "过期商品不能作为期初库存入库：请核对到期日，过期品请在导入后走报损流程")
            if not batch:
                c.error("expiry", "填写了到期日但没有批次号",
                        "到期日属于批次：请同时填写批次号（如 20270501），或清空到期日")
        if product is not None and batch and expiry is not _INVALID:
            exp = expiry if isinstance(expiry, date) else None
            known = batches.get((product.id, batch))
            if known is not None and exp is not None and known.expiry != exp:
                c.error("expiry", f"批次 {batch} 已存在，到期日为 {known.expiry or '未记录'}，与本行 {exp} 不一致",
                        f"同一批次只能有一个到期日：请改为 {known.expiry} 或使用新的批次号" if known.expiry
                        else "该批次已存在且未记录到期日，请使用新的批次号")
            first = file_expiry.setdefault((sku, batch), (row.row, exp))
            if first[0] != row.row and first[1] != exp:
                c.error("expiry", f"批次 {batch} 在第 {first[0]} 行的到期日为 {first[1] or '空'}，本行为 {exp or '空'}",
                        "同一批次只能有一个到期日，请统一")
        cost = c.parse("unit_cost", _nonneg_dec)
        if product is not None and wh is not None:
            keys.append((row, f"{sku} @ {wh.code} 批次 {batch or '（无）'}"))
            number = openings.get((product.id, wh.id))
            if number:
                c.error("sku", f"商品 {sku} 在仓库 {wh.code} 已有期初单 {number}",
                        f"期初只能导入一次：如需修改，请先作废 {number}（或用手工调整单），再重新导入")
        if len(errors) == before:
            plan.append(_OpeningLine(row.row, wh.code, LineInput(
                sku=sku, qty=qty, unit=unit, batch=batch, expiry=expiry if isinstance(expiry, date) else None,
                unit_price=cost if isinstance(cost, Decimal) else Decimal(0))))
        _tick(progress, n, len(rows))
    _duplicates(keys, "sku", "期初行", errors, "同一商品在同一仓库的同一批次只能填一行，请合并数量")
    return plan


def _row_of(e: DomainError, lines: list[_OpeningLine]) -> tuple[int, str]:
    """Map an error from create/post back to a spreadsheet row and column."""
    column = {"UNIT_MISSING": "unit", "UNIT_UNKNOWN": "unit", "UNIT_NOT_WHOLE": "qty", "BATCH_REQUIRED": "batch",
              "EXPIRY_PAST": "expiry", "BATCH_EXPIRED": "expiry"}.get(e.code, "sku")
    line = e.fields.get("line")
    if isinstance(line, int) and 1 <= line <= len(lines):
        return lines[line - 1].row, column
    for ol in lines:
        if ol.line.sku == e.fields.get("sku") and e.fields.get("warehouse") in (None, ol.warehouse):
            return ol.row, column
    return (lines[0].row if lines else 0), column


async def _write_opening(session: AsyncSession, settings: Settings, plan: list[_OpeningLine], *, post: bool,
                         now: datetime | None, progress: Progress) -> tuple[str, ...]:
    groups: dict[str, list[_OpeningLine]] = {}
    for ol in plan:
        groups.setdefault(ol.warehouse, []).append(ol)
    numbers: list[str] = []
    done = 0
    for code, lines in groups.items():
        try:
            doc = await create_document(session, settings, "opening", [ol.line for ol in lines], warehouse=code,
                                        note="Excel 导入期初库存", now=now)
            await submit_document(session, settings, doc, now=now)
            if post:
                await post_document(session, settings, doc, now=now)
        except DomainError as e:
            row, column = _row_of(e, lines)
            raise ImportFailed([RowError(row, column, e.message_zh, e.fix_zh)]) from None
        numbers.append(doc.number)
        done += len(lines)
        if progress is not None:
            progress(done, len(plan))
    return tuple(numbers)


# --------------------------------------------------------------------------------------------- entry point


async def import_file(
    session: AsyncSession,
    settings: Settings,
    kind: str,
    path: Path,
    *,
    post: bool = True,
    progress: Progress = None,
    now: datetime | None = None,
) -> ImportReport:
    """Import one file all-or-nothing: validate every row (ImportFailed lists them all), then write.

    The caller owns the transaction. Opening stock becomes one opening document per warehouse, submitted
    and (with post=True) posted at `now` (default: the current time), which also decides "today" for expiry.
    """
    cols = _columns(kind)
    table = await asyncio.to_thread(_read_table, cols, Path(path))
    return await _import_table(session, settings, kind, table, post=post, progress=progress, now=now)


async def _import_table(session: AsyncSession, settings: Settings, kind: str, table: _Table, *, post: bool,
                        progress: Progress, now: datetime | None) -> ImportReport:
    errors: list[RowError] = []
    today = (now or utcnow()).astimezone(settings.timezone).date()
    if kind == "products":
        plan: Any = await _check_products(session, table, errors, progress)
    elif kind == "warehouses":
        plan = await _check_warehouses(session, table, errors, progress)
    elif kind == "users":
        plan = await _check_users(session, table, errors, progress)
    else:
        plan = await _check_opening(session, table, errors, today, progress)
    if errors:
        raise ImportFailed(errors)
    rows = len(table.rows)
    documents: tuple[str, ...] = ()
    # A savepoint: a failure while writing leaves the caller's session as it was.
    async with session.begin_nested():
        if kind == "products":
            created, updated = await _write_products(session, plan)
        elif kind == "warehouses":
            created, updated = await _write_simple(session, Warehouse, plan)
        elif kind == "users":
            created, updated = await _write_users(session, plan)
        else:
            documents = await _write_opening(session, settings, plan, post=post, now=now, progress=progress)
            created, updated = rows, 0
    if progress is not None and kind != "opening":
        progress(rows, rows)
    return ImportReport(kind, rows, created, updated, documents)


# --------------------------------------------------------------------------------------------- demo


_EXTRA_COLUMNS: dict[str, list[Column]] = {
    "customers": [Column("code", "客户编码", True, "客户编码"), Column("name", "客户名称", True, "客户名称"),
                  Column("strategic", "战略客户", False, "是否战略客户；" + _BOOL_HELP)],
    "suppliers": [Column("code", "供应商编码", True, "供应商编码"), Column("name", "供应商名称", True, "供应商名称")],
}


def _add_years(d: date, years: int) -> date:
    return (d.replace(day=28) if (d.month, d.day) == (2, 29) else d).replace(year=d.year + years)


def _shift_years(table: _Table, today: date, margin_days: int = 30) -> _Table:
    """Move the demo's fixed expiry dates forward by whole years until they are all well in the future."""
    dates = [_date(r.values["expiry"]) for r in table.rows if r.values.get("expiry")]
    years = 0
    while dates and min(_add_years(d, years) for d in dates) < today + timedelta(days=margin_days):
        years += 1
    if not years:
        return table
    rows = [
        _Row(r.row, {**r.values, "expiry": _add_years(_date(r.values["expiry"]), years).isoformat()})
        if r.values.get("expiry") else r
        for r in table.rows
    ]
    return _Table(table.columns, rows)


def _simple_records(kind: str, table: _Table) -> list[dict[str, Any]]:
    errors: list[RowError] = []
    out = []
    for row in table.rows:
        c = _Cells(kind, row, errors)
        rec: dict[str, Any] = {"code": c.text("code"), "name": c.text("name")}
        if kind == "customers":
            rec["strategic"] = bool(c.parse("strategic", _bool))
        out.append(rec)
    if errors:
        raise ImportFailed(errors)
    return out


async def load_demo(session: AsyncSession, settings: Settings, *, now: datetime | None = None) -> None:
    """Load the bundled bakery-chain demo: masters, posted opening stock and 30 days of documents."""
    if await session.scalar(select(Product.id).limit(1)) is not None:
        raise DomainError("DEMO_NOT_EMPTY", "数据库中已有商品，演示数据只能载入空库",
                          "请用 jxcbot demo 新建一个演示库")
    now = now or utcnow()
    tz = settings.timezone
    local_today = now.astimezone(tz).date()

    def at(days_ago: int, hour: int, minute: int = 0) -> datetime:
        return datetime.combine(local_today - timedelta(days=days_ago), time(hour, minute), tz)

    def table(kind: str, name: str) -> _Table:
        return _read_table(COLUMNS.get(kind) or _EXTRA_COLUMNS[kind], DEMO_DIR / name)

    for kind in ("users", "warehouses", "products"):
        await _import_table(session, settings, kind, await asyncio.to_thread(table, kind, f"{kind}.csv"),
                            post=True, progress=None, now=None)
    for kind, model in (("customers", Customer), ("suppliers", Supplier)):
        recs = _simple_records(kind, await asyncio.to_thread(table, kind, f"{kind}.csv"))
        session.add_all(model(**r) for r in recs)
    await session.flush()
    opening = _shift_years(await asyncio.to_thread(table, "opening", "opening.csv"), local_today)
    await _import_table(session, settings, "opening", opening, post=True, progress=None, now=at(30, 8))

    def exp(days: int) -> date:
        return local_today + timedelta(days=days)

    def ln(sku: str, qty: int | str, unit: str, **kw: Any) -> LineInput:
        return LineInput(sku=sku, qty=Decimal(str(qty)), unit=unit, **kw)

    async def doc(when: datetime, doc_type: str, lines: list[LineInput], *, post: bool = True, **kw: Any) -> None:
        d = await create_document(session, settings, doc_type, lines, now=when, **kw)
        await submit_document(session, settings, d, now=when + timedelta(minutes=20))
        if post:
            await post_document(session, settings, d, now=when + timedelta(hours=1))

    day = "%m%d"
    await doc(at(27, 9), "purchase_receipt", [
        ln("RM-CREAM", 20, "桶", batch=f"CR{at(27, 9):{day}}A", expiry=exp(150), unit_price="450", tax_rate="0.13"),
        ln("RM-MILK", 15, "箱", batch=f"ML{at(27, 9):{day}}A", expiry=exp(120), unit_price="96", tax_rate="0.13"),
    ], warehouse="CW", supplier="SUP01", created_by="王库管", note="乳品周补货")
    await doc(at(25, 14), "transfer", [
        ln("RM-MILK", 2, "箱"), ln("RM-CREAM", 20, "kg"), ln("RM-FLOUR-HI", 2, "袋"), ln("PK-BOX6", 100, "个"),
    ], warehouse="CW", to_warehouse="S01", created_by="王库管", note="观前街店周末备货")
    await doc(at(21, 10), "sales_issue", [
        ln("FG-COOKIE", 5, "箱", unit_price="816"), ln("FG-NUT", 40, "袋", unit_price="28"),
    ], warehouse="CW", customer="C001", created_by="赵销售", note="园区科技下午茶礼盒")
    await doc(at(18, 9, 30), "purchase_receipt", [
        ln("RM-FLOUR-HI", 40, "袋", unit_price="150", tax_rate="0.09"),
        ln("RM-FLOUR-LOW", 20, "袋", unit_price="140", tax_rate="0.09"),
        ln("RM-SUGAR", 10, "袋", unit_price="165", tax_rate="0.13"),
    ], warehouse="CW", supplier="SUP02", created_by="王库管", note="粮油月度采购")
    await doc(at(14, 15), "borrow", [ln("PK-BOX8", 60, "个"), ln("PK-CANDLE", 30, "盒")],
              warehouse="CW", customer="C003", created_by="孙销售", due_date=local_today - timedelta(days=2),
              note="婚庆活动借用蛋糕盒和蜡烛，活动后归还")
    await doc(at(11, 10), "sales_issue", [ln("FG-MOONCAKE", 60, "盒", unit_price="168")],
              warehouse="CW", customer="C002", created_by="赵销售", note="平江路咖啡馆寄售礼盒")
    await doc(at(8, 8, 30), "purchase_receipt", [
        ln("RM-EGG", 4, "箱", batch=f"EG{at(8, 8):{day}}A", expiry=exp(25), unit_price="260", tax_rate="0.09"),
        ln("PK-BOX6", 5, "箱", unit_price="150", tax_rate="0.13"),
    ], warehouse="CW", supplier="SUP03", created_by="王库管", note="鸡蛋与包材补货")
    await doc(at(6, 16), "sales_issue", [ln("FG-COOKIE", 24, "盒", unit_price="68")],
              warehouse="S06", customer="C004", created_by="周店长", note="会展中心茶歇")
    await doc(at(4, 11), "transfer", [ln("RM-EGG", 1, "箱"), ln("RM-BUTTER", 10, "kg")],
              warehouse="CW", to_warehouse="S06", created_by="刘库管", note="金鸡湖店补货")
    await doc(at(2, 10), "sales_issue", [ln("FG-MOONCAKE", 10, "箱", unit_price="1344"),
                                         ln("RM-CREAM", 30, "kg", unit_price="52")],
              warehouse="CW", customer="C001", created_by="赵销售", note="园区科技年会订货")
    await doc(at(1, 17), "sales_order", [ln("FG-MOONCAKE", 8, "箱", unit_price="1344")], post=False,
              warehouse="CW", customer="C001", created_by="赵销售", delivery_date=local_today + timedelta(days=5),
              note="园区科技预订：5 天后送货")
