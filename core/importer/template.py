"""Import templates: `jxcbot template KIND OUT` writes the header row (and an .xlsx 说明 sheet) for a kind."""

from __future__ import annotations

import csv
import io
import unicodedata
from pathlib import Path

from core.errors import DomainError
from core.importer.specs import KIND_ZH, _columns, header

EXAMPLES: dict[str, dict[str, str]] = {
    "products": {
        "sku": "RM-MILK", "name": "全脂牛奶", "barcode": "6901234567892", "category": "原料", "stock_unit": "瓶",
        "purchase_unit": "箱", "purchase_factor": "24", "shelf_life_days": "180", "batch_tracked": "是",
        "lead_time_days": "2", "buffer_days": "1", "moq": "48", "pack_size": "24", "auto_replenish": "是",
        "purchaser": "李采购",
    },
    "warehouses": {"code": "S01", "name": "观前街店", "allow_negative": "是", "negative_floor": "-5",
                   "ships_to_stores": "否", "kind": "门店"},
    "users": {"name": "王库管", "wecom_user_id": "wangkuguan", "dingtalk_staff_id": "dt_wang01",
              "department": "仓储部", "roles": "warehouse,sales"},
    "opening": {"sku": "RM-MILK", "warehouse": "CW", "qty": "2", "unit": "箱", "batch": "ML20261110",
                "expiry": "2027-05-10", "unit_cost": "96"},
}


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
