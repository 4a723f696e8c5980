"""Excel/CSV import: templates, header matching, all-or-nothing validation, upserts, opening stock, demo data."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import func, select

from core.errors import DomainError
from core.importer import (
    COLUMNS,
    KINDS,
    ImportFailed,
    RowError,
    header,
    import_file,
    load_demo,
    write_template,
)
from core.models import (
    Batch,
    Customer,
    Document,
    DocumentLine,
    Freeze,
    Product,
    StockBalance,
    StockMove,
    User,
    Warehouse,
)

D = Decimal

WAREHOUSES = [
    ["code", "name", "allow_negative", "negative_floor", "ships_to_stores"],
    ["CW", "中央仓", "否", "0", "是"],
    ["S01", "观前街店", "是", "-5", "否"],
]
USERS = [
    ["name", "wecom_user_id", "dingtalk_staff_id", "department", "roles"],
    ["李采购", "licaigou", "dt_li", "采购部", "purchasing"],
    ["王库管", "wang", "dt_wang", "仓储部", "库管，销售"],
]
PRODUCTS = [
    ["sku", "name", "barcode", "category", "stock_unit", "purchase_unit", "purchase_factor", "shelf_life_days",
     "batch_tracked", "lead_time_days", "buffer_days", "moq", "pack_size", "auto_replenish", "purchaser"],
    ["MILK", "全脂牛奶", "6940280158388", "原料", "瓶", "箱", "24", "180", "是", "2", "1", "48", "24", "是", "李采购"],
    ["CREAM", "淡奶油", "6930180079197", "原料", "kg", "桶", "10", "180", "否", "3", "", "", "", "", ""],
    ["SUGAR", "细砂糖", "", "原料", "kg", "", "", "", "", "", "", "", "", "", ""],
]


def write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    """A CSV file with the given rows."""
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


def future(settings, days: int = 365) -> str:
    return (datetime.now(settings.timezone).date() + timedelta(days=days)).isoformat()


async def run(db, settings, kind: str, path: Path, **kw):
    """Import in one write transaction (like the CLI)."""
    return await db.write(lambda s: import_file(s, settings, kind, path, **kw))


async def masters(db, settings, tmp_path: Path) -> None:
    await run(db, settings, "warehouses", write_csv(tmp_path / "w.csv", WAREHOUSES))
    await run(db, settings, "users", write_csv(tmp_path / "u.csv", USERS))
    await run(db, settings, "products", write_csv(tmp_path / "p.csv", PRODUCTS))


async def counts(db) -> dict[str, int]:
    async with db.read() as s:
        return {
            m.__tablename__: await s.scalar(select(func.count()).select_from(m))
            for m in (Product, Warehouse, User, Document, DocumentLine, StockMove, StockBalance, Batch)
        }


async def failed(db, settings, kind: str, path: Path) -> list[RowError]:
    """Import expecting ImportFailed; asserts nothing was written and returns the errors."""
    before = await counts(db)
    with pytest.raises(ImportFailed) as e:
        await run(db, settings, kind, path)
    assert await counts(db) == before
    assert str(e.value).startswith(f"导入失败：共 {len(e.value.errors)} 处错误")
    return e.value.errors


def opening(settings, *rows: list[str]) -> list[list[str]]:
    return [["sku", "warehouse", "qty", "unit", "batch", "expiry", "unit_cost"], *rows]


async def on_hand(db, sku: str, wh: str) -> Decimal:
    async with db.read() as s:
        q = await s.scalar(
            select(func.coalesce(func.sum(StockBalance.qty), 0))
            .join(Product, Product.id == StockBalance.product_id)
            .join(Warehouse, Warehouse.id == StockBalance.warehouse_id)
            .where(Product.sku == sku, Warehouse.code == wh)
        )
    return D(q)


# ------------------------------------------------------------------------------------------ templates


def test_header_format():
    assert header("stock_unit", "库存单位") == "库存单位 (stock_unit)"
    assert [c.key for c in COLUMNS["opening"]] == ["sku", "warehouse", "qty", "unit", "batch", "expiry", "unit_cost"]
    assert set(COLUMNS) == set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_templates_xlsx_and_csv(tmp_path, kind):
    write_template(kind, tmp_path / "t.xlsx")
    wb = openpyxl.load_workbook(tmp_path / "t.xlsx")
    ws, info = wb.worksheets
    assert info.title == "说明"
    heads = [c.value for c in ws[1]]
    assert heads == [header(c.key, c.zh) for c in COLUMNS[kind]]
    assert ws["A1"].font.bold
    text = "\n".join(str(c.value) for row in info.iter_rows() for c in row if c.value)
    assert "必填" in text and all(c.help_zh in text for c in COLUMNS[kind])
    write_template(kind, tmp_path / "t.csv")
    raw = (tmp_path / "t.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert raw.decode("utf-8-sig").strip().split(",") == heads
    with pytest.raises(DomainError):
        write_template(kind, tmp_path / "t.txt")


async def test_template_round_trip(db, settings, tmp_path):
    await run(db, settings, "warehouses", write_csv(tmp_path / "w.csv", WAREHOUSES))
    await run(db, settings, "users", write_csv(tmp_path / "u.csv", USERS))
    path = tmp_path / "products.xlsx"
    write_template("products", path)
    wb = openpyxl.load_workbook(path)
    ws = wb.worksheets[0]
    heads = [c.value for c in ws[1]]
    assert "库存单位 (stock_unit)" in heads
    values = {"sku": "MILK", "name": "全脂牛奶", "barcode": 6940280158388, "stock_unit": "瓶", "purchase_unit": "箱",
              "purchase_factor": 24.0, "batch_tracked": True, "shelf_life_days": 180, "moq": 1.5,
              "purchaser": "李采购"}
    ws.append([values.get(c.key) for c in COLUMNS["products"]])
    ws.append([None] * len(heads))  # an empty row is skipped
    ws.append(["EGG", "鸡蛋", None, None, "个", "箱", 360])
    wb.save(path)
    progress: list[tuple[int, int]] = []
    report = await run(db, settings, "products", path, progress=lambda d, t: progress.append((d, t)))
    assert (report.kind, report.rows, report.created, report.updated) == ("products", 2, 2, 0)
    assert progress and progress[-1] == (2, 2)
    async with db.read() as s:
        milk = await s.scalar(select(Product).where(Product.sku == "MILK"))
        purchaser = await s.scalar(select(User).where(User.name == "李采购"))
    assert (milk.barcode, milk.purchase_unit, milk.purchase_factor) == ("6940280158388", "箱", 24)
    assert milk.batch_tracked and milk.shelf_life_days == 180 and milk.moq == D("1.5")
    assert milk.pack_size == 1 and milk.purchaser_id == purchaser.id

    # opening stock from an xlsx with native number and date cells
    path = tmp_path / "opening.xlsx"
    write_template("opening", path)
    wb = openpyxl.load_workbook(path)
    wb.worksheets[0].append(["MILK", "CW", 2.0, "箱", "B1", datetime.now() + timedelta(days=300), 96])
    wb.save(path)
    report = await run(db, settings, "opening", path)
    assert len(report.documents) == 1
    assert await on_hand(db, "MILK", "CW") == 48


# ------------------------------------------------------------------------------------------ reading


async def test_csv_headers_may_be_key_chinese_or_full_width(db, settings, tmp_path):
    rows = [["仓库编码", "仓库名称（name）", " allow_negative ", "负库存下限 （negative_floor）"],
            ["CW", "中央仓", "no", ""], ["", "", "", ""], ["S01", "一号店", "Y", "-5"]]
    report = await run(db, settings, "warehouses", write_csv(tmp_path / "w.csv", rows))
    assert (report.rows, report.created) == (2, 2)
    async with db.read() as s:
        s01 = await s.scalar(select(Warehouse).where(Warehouse.code == "S01"))
        cw = await s.scalar(select(Warehouse).where(Warehouse.code == "CW"))
    assert s01.allow_negative and s01.negative_floor == -5 and s01.ships_to_stores
    assert not cw.allow_negative and cw.negative_floor == 0


async def test_gbk_csv_is_read(db, settings, tmp_path):
    path = write_csv(tmp_path / "w.csv", [["仓库编码", "仓库名称"], ["CW", "中央仓"], ["S02", "平江路店"]], "gbk")
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")
    report = await run(db, settings, "warehouses", path)
    assert report.created == 2
    async with db.read() as s:
        assert await s.scalar(select(Warehouse.name).where(Warehouse.code == "S02")) == "平江路店"


async def test_header_errors(db, settings, tmp_path):
    errors = await failed(db, settings, "products",
                          write_csv(tmp_path / "p.csv", [["sku", "商品名称", "颜色"], ["A", "甲", "红"]]))
    assert {(e.row, e.column) for e in errors} == {(1, "颜色"), (1, "stock_unit")}
    assert any("库存单位 (stock_unit)" in e.message_zh for e in errors)
    with pytest.raises(DomainError) as e:
        await run(db, settings, "products", write_csv(tmp_path / "p.xls", [["sku"]]))
    assert ".xlsx" in e.value.fix_zh
    with pytest.raises(DomainError):
        await run(db, settings, "products", write_csv(tmp_path / "p.json", [["sku"]]))
    with pytest.raises(DomainError):
        await run(db, settings, "things", write_csv(tmp_path / "x.csv", [["sku"]]))
    errors = await failed(db, settings, "warehouses", write_csv(tmp_path / "w.csv", [["code", "name"]]))
    assert errors[0].row == 2


# ------------------------------------------------------------------------------------------ masters


async def test_products_upsert_updates_existing(db, settings, tmp_path):
    await masters(db, settings, tmp_path)
    rows = [["sku", "name", "stock_unit", "purchase_unit", "purchase_factor"],
            ["MILK", "全脂牛奶(新包装)", "瓶", "箱", "12"], ["FLOUR", "面粉", "kg", "袋", "25"]]
    report = await run(db, settings, "products", write_csv(tmp_path / "p2.csv", rows))
    assert (report.rows, report.created, report.updated) == (2, 1, 1)
    async with db.read() as s:
        milk = await s.scalar(select(Product).where(Product.sku == "MILK"))
        sugar = await s.scalar(select(Product).where(Product.sku == "SUGAR"))
    assert (milk.name, milk.purchase_factor) == ("全脂牛奶(新包装)", 12)
    assert milk.barcode == "6940280158388" and milk.batch_tracked  # columns not in the file are kept
    assert (sugar.purchase_unit, sugar.purchase_factor) == ("kg", 1)  # blank purchase unit = stock unit


async def test_product_validation_errors(db, settings, tmp_path):
    await masters(db, settings, tmp_path)
    head = ["sku", "name", "barcode", "stock_unit", "purchase_unit", "purchase_factor", "batch_tracked",
            "lead_time_days", "moq", "purchaser"]
    rows = [head,
            ["N1", "新品一", "6930180079197", "kg", "", "", "", "", "", ""],   # 2: barcode held by CREAM
            ["N2", "新品二", "", "瓶", "箱", "", "", "", "", ""],              # 3: factor missing
            ["N3", "新品三", "", "瓶", "箱", "1.5", "maybe", "-1", "-2", "某人"],  # 4: five errors
            ["N4", "", "", "", "", "", "", "", "", ""],                       # 5: name and unit blank
            ["N5", "新品五", "6.9E+12", "kg", "kg", "3", "", "", "", ""]]     # 6: sci barcode, factor ≠ 1
    errors = await failed(db, settings, "products", write_csv(tmp_path / "p.csv", rows))
    assert sorted((e.row, e.column) for e in errors) == [
        (2, "barcode"), (3, "purchase_factor"),
        (4, "batch_tracked"), (4, "lead_time_days"), (4, "moq"), (4, "purchase_factor"), (4, "purchaser"),
        (5, "name"), (5, "stock_unit"), (6, "barcode"), (6, "purchase_factor"),
    ]
    bad_bool = next(e for e in errors if e.column == "batch_tracked")
    assert "maybe" in bad_bool.message_zh and "是" in bad_bool.fix_zh
    assert all(e.message_zh and e.fix_zh for e in errors)


async def test_duplicate_skus_report_both_rows(db, settings, tmp_path):
    rows = [["sku", "name", "stock_unit"], ["A", "甲", "kg"], ["B", "乙", "kg"], ["A", "甲2", "kg"]]
    errors = await failed(db, settings, "products", write_csv(tmp_path / "p.csv", rows))
    assert [(e.row, e.column) for e in errors] == [(2, "sku"), (4, "sku")]
    assert "第 2、4 行" in errors[0].message_zh


async def test_barcode_swap_between_existing_products(db, settings, tmp_path):
    await masters(db, settings, tmp_path)
    rows = [["sku", "name", "stock_unit", "barcode"],
            ["MILK", "全脂牛奶", "瓶", "6930180079197"], ["CREAM", "淡奶油", "kg", "6940280158388"]]
    report = await run(db, settings, "products", write_csv(tmp_path / "p.csv", rows))
    assert report.updated == 2
    async with db.read() as s:
        assert await s.scalar(select(Product.sku).where(Product.barcode == "6930180079197")) == "MILK"


async def test_stock_unit_cannot_change_once_used(db, settings, tmp_path):
    await masters(db, settings, tmp_path)
    await run(db, settings, "opening", write_csv(tmp_path / "o.csv", opening(settings, ["SUGAR", "CW", "5", "kg"])))
    rows = [["sku", "name", "stock_unit"], ["SUGAR", "细砂糖", "g"], ["CREAM", "淡奶油", "kg"]]
    errors = await failed(db, settings, "products", write_csv(tmp_path / "p.csv", rows))
    assert [(e.row, e.column) for e in errors] == [(2, "stock_unit")]


async def test_warehouse_floor_must_not_be_positive(db, settings, tmp_path):
    rows = [["code", "name", "allow_negative", "negative_floor"],
            ["S01", "店1", "是", "50"], ["S02", "店2", "否", "-5"], ["S03", "店3", "是", "-5"]]
    errors = await failed(db, settings, "warehouses", write_csv(tmp_path / "w.csv", rows))
    assert [(e.row, e.column) for e in errors] == [(2, "negative_floor"), (3, "negative_floor")]
    assert errors[0].fix_zh == "填写 0 或负数，如 -50"


async def test_users_roles_aliases_and_errors(db, settings, tmp_path):
    await run(db, settings, "users", write_csv(tmp_path / "u.csv", USERS))
    async with db.read() as s:
        wang = await s.scalar(select(User).where(User.name == "王库管"))
    assert wang.roles == "warehouse,sales" and wang.wecom_user_id == "wang"
    rows = [["name", "wecom_user_id", "roles"],
            ["赵销售", "zhao", "sales, 主管"],
            ["钱某", "qian", "boss"],
            ["孙某", "wang", "admin"],        # wecom id already belongs to 王库管
            ["李采购", "li2", "采购、管理员"]]  # update
    errors = await failed(db, settings, "users", write_csv(tmp_path / "u2.csv", rows))
    assert [(e.row, e.column) for e in errors] == [(3, "roles"), (4, "wecom_user_id")]
    assert "boss" in errors[0].message_zh
    assert all(word in errors[0].fix_zh for word in ("warehouse", "库管", "purchasing", "管理员"))
    del rows[2:4]
    report = await run(db, settings, "users", write_csv(tmp_path / "u3.csv", rows))
    assert (report.created, report.updated) == (1, 1)
    async with db.read() as s:
        assert await s.scalar(select(User.roles).where(User.name == "赵销售")) == "sales,manager"
        li = await s.scalar(select(User).where(User.name == "李采购"))
    assert (li.roles, li.wecom_user_id, li.dingtalk_staff_id) == ("purchasing,admin", "li2", "dt_li")


# ------------------------------------------------------------------------------------------ opening


async def test_opening_creates_posted_documents_with_right_balances(db, settings, tmp_path):
    await masters(db, settings, tmp_path)
    exp = future(settings)
    rows = opening(settings,
                   ["MILK", "CW", "2", "箱", "B1", exp, "96"],
                   ["MILK", "S01", "30", "瓶", "B1", exp, "4"],
                   ["CREAM", "CW", "2", "桶", "", "", ""],
                   ["SUGAR", "S01", "12.5", "kg", "", "", "5.5"])
    progress: list[tuple[int, int]] = []
    report = await run(db, settings, "opening", write_csv(tmp_path / "o.csv", rows),
                       progress=lambda d, t: progress.append((d, t)))
    assert (report.rows, report.created, len(report.documents)) == (4, 4, 2)
    assert all(n.startswith("QC") for n in report.documents)
    assert progress[-1] == (4, 4)
    assert await on_hand(db, "MILK", "CW") == 48
    assert await on_hand(db, "MILK", "S01") == 30
    assert await on_hand(db, "CREAM", "CW") == 20
    assert await on_hand(db, "SUGAR", "S01") == D("12.5")
    async with db.read() as s:
        docs = list(await s.scalars(select(Document).order_by(Document.id)))
        line = await s.scalar(select(DocumentLine).where(DocumentLine.unit == "箱"))
    assert [d.status for d in docs] == ["posted", "posted"] and {d.type for d in docs} == {"opening"}
    assert (line.qty, line.factor, line.stock_qty, line.unit_price, line.batch_code) == (2, 24, 48, 96, "B1")

    # the same opening again is refused (would double the stock)
    errors = await failed(db, settings, "opening", write_csv(tmp_path / "o2.csv", rows[:2]))
    assert errors[0].column == "sku" and report.documents[0] in errors[0].message_zh


async def test_opening_submit_only(db, settings, tmp_path):
    await masters(db, settings, tmp_path)
    report = await run(db, settings, "opening", write_csv(tmp_path / "o.csv", opening(
        settings, ["SUGAR", "CW", "10", "kg"])), post=False)
    async with db.read() as s:
        doc = await s.scalar(select(Document).where(Document.number == report.documents[0]))
    assert doc.status == "submitted"
    assert await on_hand(db, "SUGAR", "CW") == 0


async def test_blank_unit_is_an_error_and_nothing_is_written(db, settings, tmp_path):
    await masters(db, settings, tmp_path)
    rows = opening(settings, ["SUGAR", "CW", "10", "kg"], ["MILK", "CW", "48", "", "B1", future(settings)])
    errors = await failed(db, settings, "opening", write_csv(tmp_path / "o.csv", rows))
    assert [(e.row, e.column) for e in errors] == [(3, "unit")]
    assert "瓶" in errors[0].fix_zh and "箱" in errors[0].fix_zh and "单位为空" in errors[0].message_zh
    async with db.read() as s:
        assert await s.scalar(select(func.count()).select_from(Document)) == 0
    # and the caller's session is left untouched
    async with db.session() as s:
        with pytest.raises(ImportFailed):
            await import_file(s, settings, "opening", tmp_path / "o.csv")
        assert not s.new and not s.dirty and not s.deleted


@pytest.mark.parametrize(
    ("row", "column", "needle"),
    [
        (["MILK", "CW", "1.5", "箱", "B1"], "qty", "不是整数"),
        (["MILK", "CW", "3", "托", "B1"], "unit", "没有单位「托」"),
        (["NOPE", "CW", "3", "kg"], "sku", "找不到商品「NOPE」"),
        (["SUGAR", "WH9", "3", "kg"], "warehouse", "找不到仓库「WH9」"),
        (["SUGAR", "CW", "-3", "kg"], "qty", "期初数量不能为负"),
        (["SUGAR", "CW", "0", "kg"], "qty", "为 0"),
        (["SUGAR", "CW", "三", "kg"], "qty", "不是数字"),
        (["MILK", "CW", "2", "箱", "", ""], "batch", "缺少批次号"),
        (["MILK", "CW", "2", "箱", "B1", "2020-01-01"], "expiry", "已过"),
        (["MILK", "CW", "2", "箱", "B1", "2027-13-45"], "expiry", "不是有效日期"),
        (["SUGAR", "CW", "2", "kg", "", "2099-01-01"], "expiry", "没有批次号"),
        (["SUGAR", "CW", "2", "kg", "", "", "-1"], "unit_cost", "负数"),
    ],
)
async def test_opening_bad_rows(db, settings, tmp_path, row, column, needle):
    await masters(db, settings, tmp_path)
    rows = opening(settings, ["CREAM", "CW", "5", "kg"], row)
    errors = await failed(db, settings, "opening", write_csv(tmp_path / "o.csv", rows))
    assert [(e.row, e.column) for e in errors] == [(3, column)]
    assert needle in errors[0].message_zh, errors[0]
    assert errors[0].fix_zh


async def test_every_bad_row_is_reported(db, settings, tmp_path):
    await masters(db, settings, tmp_path)
    exp = future(settings)
    past = (datetime.now(settings.timezone).date() - timedelta(days=1)).isoformat()
    rows = opening(settings,
                   ["SUGAR", "CW", "10", "kg"],            # 2 ok
                   ["MILK", "CW", "1.5", "箱", "B1", exp],   # 3 whole-number
                   ["", "", "", "", "", ""],                 # 4 empty: skipped, numbering continues
                   ["XX", "CW", "1", "kg"],                  # 5 unknown sku
                   ["SUGAR", "ZZ", "1", "kg"],               # 6 unknown warehouse
                   ["CREAM", "CW", "-2", "kg"],              # 7 negative
                   ["MILK", "S01", "24", "瓶", "B2", past],   # 8 expired
                   ["CREAM", "S01", "3", ""],                # 9 blank unit
                   ["SUGAR", "CW", "5", "kg"])               # 10 duplicate of row 2
    errors = await failed(db, settings, "opening", write_csv(tmp_path / "o.csv", rows))
    assert [(e.row, e.column) for e in errors] == [
        (2, "sku"), (3, "qty"), (5, "sku"), (6, "warehouse"), (7, "qty"), (8, "expiry"), (9, "unit"), (10, "sku"),
    ]
    assert "第 2、10 行" in errors[0].message_zh


async def test_batch_expiry_must_match_existing_batch(db, settings, tmp_path):
    await masters(db, settings, tmp_path)
    await run(db, settings, "opening", write_csv(tmp_path / "o.csv", opening(
        settings, ["MILK", "CW", "1", "箱", "B1", future(settings, 100)])))
    errors = await failed(db, settings, "opening", write_csv(tmp_path / "o2.csv", opening(
        settings, ["MILK", "S01", "1", "箱", "B1", future(settings, 200)])))
    assert [(e.row, e.column) for e in errors] == [(2, "expiry")]


# ------------------------------------------------------------------------------------------ demo


async def test_load_demo_on_empty_database(db, settings):
    await db.write(lambda s: load_demo(s, settings))
    async with db.read() as s:
        rows = (await s.execute(
            select(Warehouse.code, Warehouse.allow_negative, StockBalance.qty)
            .join(Warehouse, Warehouse.id == StockBalance.warehouse_id)
        )).all()
        docs = list(await s.scalars(select(Document)))
        assert await s.scalar(select(func.count()).select_from(Customer)) >= 3
        assert await s.scalar(select(func.count()).select_from(Warehouse)) == 13
        assert await s.scalar(select(func.count()).select_from(Product)) >= 18
    per_wh: dict[str, Decimal] = {}
    for code, _allow, qty in rows:
        per_wh[code] = per_wh.get(code, D(0)) + qty
    assert per_wh["CW"] > 0
    assert any(q > 0 for code, q in per_wh.items() if code.startswith("S"))
    assert all(qty >= 0 for _code, allow, qty in rows if not allow)
    types = {d.type for d in docs if d.status == "posted"}
    assert {"opening", "purchase_receipt", "sales_issue", "transfer", "borrow"} <= types
    now = datetime.now(settings.timezone)
    assert all(d.posted_at < now for d in docs if d.posted_at)
    with pytest.raises(DomainError):
        await db.write(lambda s: load_demo(s, settings))


async def test_posting_failure_rolls_back_the_whole_file(db, settings, tmp_path):
    await masters(db, settings, tmp_path)
    async with db.session() as s:
        sugar = await s.scalar(select(Product).where(Product.sku == "SUGAR"))
        s01 = await s.scalar(select(Warehouse).where(Warehouse.code == "S01"))
        s.add(Freeze(product_id=sugar.id, warehouse_id=s01.id, reason="测试冻结"))
    rows = opening(settings, ["CREAM", "CW", "5", "kg"], ["MILK", "S01", "1", "箱", "B1", future(settings)],
                   ["SUGAR", "S01", "3", "kg"])
    errors = await failed(db, settings, "opening", write_csv(tmp_path / "o.csv", rows))
    assert [(e.row, e.column) for e in errors] == [(4, "sku")]
    assert "冻结" in errors[0].message_zh


async def test_warehouse_kinds_are_imported_and_checked(db, settings, tmp_path):
    rows = [["code", "name", "kind"], ["CW", "中央仓", "中央仓"], ["S01", "观前街店", "门店"], ["X1", "外仓", ""],
            ["B1", "备用仓", "store"]]
    path = tmp_path / "wh.csv"
    path.write_text("\n".join(",".join(r) for r in rows), encoding="utf-8")
    await db.write(lambda s: import_file(s, settings, "warehouses", path))
    async with db.read() as s:
        kinds = {w.code: w.kind for w in await s.scalars(select(Warehouse))}
    assert kinds == {"CW": "central", "S01": "store", "X1": "other", "B1": "store"}
    path.write_text("code,name,kind\nS02,平江路店,仓库\n", encoding="utf-8")
    with pytest.raises(ImportFailed) as e:
        await db.write(lambda s: import_file(s, settings, "warehouses", path))
    assert "不是有效的仓库类型" in str(e.value.errors[0]) and "中央仓、门店 或 其他" in str(e.value.errors[0])
