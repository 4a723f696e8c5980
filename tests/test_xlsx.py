"""The streaming .xlsx writer: what openpyxl reads back is what was written (text, numbers, bold header, sheets)."""

from __future__ import annotations

import io
import zipfile
from decimal import Decimal

import openpyxl

from core.reports.xlsx import Book


def test_cells_sheets_and_header_read_back():
    wb = Book()
    ws = wb.sheet("高风险商品 & <清单>")
    ws.append(["SKU", "名称", *[f"列{k}" for k in range(30)]], bold=True)
    ws.append(["A&B <c>", "含\x01控制\x0b字符\"引号'", Decimal("12.500000"), 3, 0.25, None, True, "", "  前后空格 "])
    ws.append(["x" * 40000])
    notes = wb.sheet("说明")
    notes.append(["公式", "周转率 = 出库 ÷ 平均库存"])
    data = wb.bytes()

    book = openpyxl.load_workbook(io.BytesIO(data))
    assert book.sheetnames == ["高风险商品 & <清单>", "说明"]
    sheet = book["高风险商品 & <清单>"]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:3] == ("SKU", "名称", "列0") and rows[0][31] == "列29" and len(rows[0]) == 32
    assert sheet.cell(1, 32).font.b and sheet.cell(1, 1).font.b and not sheet.cell(2, 1).font.b
    assert rows[1][:9] == ("A&B <c>", "含控制字符\"引号'", 12.5, 3, 0.25, None, True, None, "  前后空格 ")
    assert rows[2][0] == "x" * 32767  # Excel's cell limit, cut rather than an unreadable file
    assert list(book["说明"].iter_rows(values_only=True)) == [("公式", "周转率 = 出库 ÷ 平均库存")]
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert {"[Content_Types].xml", "xl/workbook.xml", "xl/styles.xml", "xl/worksheets/sheet2.xml"} <= set(names)


def test_a_hundred_thousand_rows_stream():
    wb = Book()
    ws = wb.sheet("清单")
    for i in range(100_000):
        ws.append([f"SKU{i:06d}", f"商品{i}", i * 0.5])
    book = openpyxl.load_workbook(io.BytesIO(wb.bytes()), read_only=True)
    rows = list(book["清单"].iter_rows(values_only=True))
    assert len(rows) == 100_000 and rows[-1] == ("SKU099999", "商品99999", 49999.5)
