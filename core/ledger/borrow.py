"""Borrow slips (借条): a draft per person and customer filled line by line, the customer's signature, returns
against the slip (on loan → on hand, the same batch), open slips with what is still out, and the return rate."""

from __future__ import annotations

import calendar
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings
from core.errors import DomainError
from core.ledger.doctypes import STATUS_ZH, doc_type
from core.ledger.document_rows import insert_document
from core.ledger.documents import (
    LineInput,
    get_document,
    line_row,
    post_document,
    reopen_document,
    submit_document,
)
from core.ledger.numbering import next_number
from core.ledger.units import to_stock_qty
from core.models import (
    ON_LOAN,
    Attachment,
    Batch,
    Customer,
    Document,
    DocumentLine,
    Product,
    StockBalance,
    StockMove,
    User,
    Warehouse,
)
from core.types import fq

BORROW = "borrow"
RETURN = "borrow_return"
SIGNATURE = "signature"  # core.approvals.evidence.SIGNATURE (core/ledger does not import core/approvals)
VOID_SIGNATURE = "signature_void"  # a signature taken before the slip's lines changed: kept, no longer valid
ZERO = Decimal(0)
MAX_QTY = Decimal(10) ** 9  # stock units on one line: far beyond any real loan, well inside the ledger's range
MAX_LINES = 200
_QTY = re.compile(r"^(\d+(?:\.\d+)?)([^\d\s.+\-/]*)$")
_FULL_DATE = re.compile(r"^(\d{4})[-/年](\d{1,2})[-/月](\d{1,2})日?$")
_SHORT_DATE = re.compile(r"^(\d{1,2})[-/月](\d{1,2})日?$")
_DAYS = re.compile(r"^(\d{1,3})天(?:后)?$")


# --- parsing what people type -----------------------------------------------------------------------------------


def is_qty(token: str) -> bool:
    """True for a token shaped like a quantity: 2, 1.5, 10kg, 3箱."""
    return _QTY.match(token.strip()) is not None and not is_date(token)


def parse_qty(token: str, product: Product | None = None) -> tuple[Decimal, str]:
    """"2", "10kg", "3箱" → (quantity, unit; "" when none is written). DomainError naming the rule otherwise
    (scientific notation such as 1e30, words, signs)."""
    m = _QTY.match(token.strip())
    example = f"2、2{product.stock_unit}" + (f" 或 1{product.purchase_unit}" if product and product.purchase_unit
                                             and product.purchase_unit != product.stock_unit else "") \
        if product else "2、10kg 或 3箱"
    if m is None:
        raise DomainError("BAD_QTY", f"看不懂数量「{token}」：数量要写成普通的正数（可带单位），不能用科学计数法或文字",
                          f"请改为例如 {example}", {"qty": token})
    try:
        qty = Decimal(m.group(1))
    except InvalidOperation:  # pragma: no cover - the pattern only lets digits through
        raise DomainError("BAD_QTY", f"看不懂数量「{token}」", f"请改为例如 {example}") from None
    if qty <= 0:
        raise DomainError("BAD_QTY", f"数量 {token} 必须大于 0", f"请改为例如 {example}", {"qty": token})
    if qty != qty.quantize(Decimal("0.000001")):
        raise DomainError("BAD_QTY", f"数量 {token} 的小数超过 6 位", "请最多写 6 位小数，或改用更小的单位")
    return qty, m.group(2)


def is_date(token: str) -> bool:
    """True for a token shaped like a return date: 2026-12-31, 12-31, 12月31日, 7天."""
    t = token.strip()
    return bool(_FULL_DATE.match(t) or _SHORT_DATE.match(t) or _DAYS.match(t))


def parse_due(token: str, today: date) -> date | None:
    """A return date from 2026-12-31 / 2026/12/31 / 12-31 / 12月31日 (the next such day from today) / 7天 (7 days
    from today); None for a token that is no date; DomainError for a day that does not exist or is past."""
    t = token.strip()
    if m := _DAYS.match(t):
        return today + timedelta(days=int(m.group(1)))
    full, short = _FULL_DATE.match(t), _SHORT_DATE.match(t)
    if not (full or short):
        return None
    try:
        if full:
            due = date(int(full.group(1)), int(full.group(2)), int(full.group(3)))
        else:
            assert short is not None
            month, day = int(short.group(1)), int(short.group(2))
            due = date(today.year, month, day)
            if due < today:
                due = date(today.year + 1, month, day)
    except ValueError:
        raise DomainError("BAD_DATE", f"日期「{token}」不存在", "请写归还日期，例如 2026-12-31、12-31 或 7天") from None
    if due < today:
        raise DomainError("DUE_PAST", f"归还日期 {due} 已经过了（今天是 {today}）",
                          "归还日期不能早于今天：请写今天或以后的日期，例如 "
                          f"{today + timedelta(days=7):%m-%d} 或 7天", {"due": str(due)})
    return due


@dataclass(frozen=True)
class Item:
    """One product as typed: what names it (barcode or SKU), the quantity token and an optional batch."""

    query: str
    qty: str
    batch: str = ""


def parse_items(tokens: list[str], known: set[str], today: date, *, dates: bool = True) -> tuple[list[Item],
                                                                                              date | None]:
    """`<条码|SKU> <数量> [批次]` groups and (when `dates`) one return date anywhere. A token after a quantity is the
    next product when a quantity follows it and it is not a batch in front of a known product code (`known`: the
    barcodes and SKUs among the tokens); otherwise it is that line's batch."""
    items: list[Item] = []
    due: date | None = None
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if dates and is_date(t):
            due = parse_due(t, today)
            i += 1
            continue
        if i + 1 >= len(tokens) or (dates and is_date(tokens[i + 1])):
            raise DomainError("NO_QTY", f"「{t}」后面缺少数量",
                              "每个商品后面写数量，例如：6930180079197 2kg CR20261101")
        qty, j, batch = tokens[i + 1], i + 2, ""
        if j < len(tokens) and not (dates and is_date(tokens[j])):
            nxt = tokens[j + 1] if j + 1 < len(tokens) else None
            starts_next = nxt is not None and is_qty(nxt) and nxt not in known
            if not starts_next:
                batch, j = tokens[j], j + 1
        items.append(Item(t, qty, batch))
        i = j
    return items, due


# --- masters ----------------------------------------------------------------------------------------------------


async def warehouse_by_code(session: AsyncSession, code: str) -> Warehouse | None:
    """The warehouse with this code (any case), or None."""
    return (await session.scalars(select(Warehouse).where(func.lower(Warehouse.code) == code.strip().lower())))\
        .first()


async def products_by_code(session: AsyncSession, codes: set[str]) -> dict[str, Product]:
    """Products whose barcode or SKU is one of `codes`, keyed by that code (SKU in any case)."""
    if not codes:
        return {}
    lowered = {c.lower(): c for c in codes}
    rows = (await session.scalars(select(Product).where(or_(Product.barcode.in_(codes),
                                                            func.lower(Product.sku).in_(lowered))))).all()
    out: dict[str, Product] = {}
    for p in rows:
        if p.barcode in codes:
            out[p.barcode] = p
        if p.sku.lower() in lowered:
            out[lowered[p.sku.lower()]] = p
    return out


@dataclass(frozen=True)
class BatchStock:
    """On-hand stock of one batch in one warehouse."""

    code: str
    expiry: date | None
    qty: Decimal

    def expired(self, today: date) -> bool:
        """True when the batch is past its expiry date."""
        return self.expiry is not None and self.expiry < today


async def stock_batches(session: AsyncSession, product_id: int, warehouse_id: int) -> list[BatchStock]:
    """On-hand stock of the product in the warehouse per batch (first to expire first)."""
    rows = (await session.execute(
        select(Batch.code, Batch.expiry, StockBalance.qty).join(Batch, Batch.id == StockBalance.batch_id)
        .where(StockBalance.product_id == product_id, StockBalance.warehouse_id == warehouse_id,
               StockBalance.qty > 0))).all()
    out = [BatchStock(c, e, q) for c, e, q in rows]
    return sorted(out, key=lambda b: (b.expiry is None, b.expiry or date.max, b.code))


def _batches_text(batches: list[BatchStock], unit: str, today: date) -> str:
    ok = [b for b in batches if not b.expired(today)]
    if not ok:
        return "该仓库没有未过期的库存"
    return "在库批次：" + "、".join(
        f"{b.code or '（无批次）'}" + (f" 到期 {b.expiry}" if b.expiry else "") + f" {fq(b.qty)}{unit}" for b in ok[:8])


async def default_warehouse(session: AsyncSession, product: Product | None, example: str) -> Warehouse:
    """Where a new slip lends from when the message names no warehouse: the one central warehouse, the only
    warehouse, or the only one holding the product; DomainError listing where it is otherwise."""
    central = (await session.scalars(select(Warehouse).where(Warehouse.kind == "central"))).all()
    if len(central) == 1:
        return central[0]
    every = (await session.scalars(select(Warehouse).order_by(Warehouse.code).limit(2))).all()
    if len(every) == 1:
        return every[0]
    if product is None:
        raise DomainError("NO_WAREHOUSE", "没有设置唯一的中央仓，不知道这张借条从哪个仓库借出",
                          f"请在客户后面写上仓库编码，例如：{example}")
    rows = (await session.execute(
        select(Warehouse, func.sum(StockBalance.qty)).join(StockBalance, StockBalance.warehouse_id == Warehouse.id)
        .where(StockBalance.product_id == product.id, StockBalance.qty > 0)
        .group_by(Warehouse.id).order_by(Warehouse.code))).all()
    if len(rows) == 1:
        return rows[0][0]
    where = "、".join(f"{w.code} {fq(q)}{product.stock_unit}" for w, q in rows[:10]) or "没有仓库有货"
    raise DomainError("NO_WAREHOUSE", f"没有设置中央仓，{product.name}（{product.sku}）在多个仓库：{where}",
                      f"请在客户后面写上从哪个仓库借出，例如：{example}")


# --- the draft slip ---------------------------------------------------------------------------------------------


async def drafts_of(session: AsyncSession, user_id: int, customer_id: int | None = None) -> list[Document]:
    """The person's borrow slips still being written (for one customer), newest first: drafts, and rejected ones
    (editing one reopens it as a draft)."""
    stmt = select(Document).where(Document.type == BORROW, Document.status.in_(("draft", "rejected")),
                                  Document.created_by_id == user_id)
    if customer_id is not None:
        stmt = stmt.where(Document.customer_id == customer_id)
    return list(await session.scalars(stmt.order_by(Document.id.desc())))


async def open_draft(session: AsyncSession, settings: Settings, user_id: int, customer: Customer,
                     warehouse: Warehouse, now: datetime) -> tuple[Document, bool]:
    """The person's draft slip for the customer, opened now (due in [borrow] default_days) when there is none;
    (slip, newly opened)."""
    found = await drafts_of(session, user_id, customer.id)
    if found:
        return found[0], False
    dt = doc_type(BORROW)
    today = now.astimezone(settings.timezone).date()
    draft = Document(number=await next_number(session, dt.prefix, now, settings.timezone), type=BORROW,
                     status="draft", warehouse_id=warehouse.id, customer_id=customer.id, created_by_id=user_id,
                     validation_mode=dt.validation_mode(settings.validation), created_at=now,
                     due_date=today + timedelta(days=settings.borrow_default_days))
    return await insert_document(session, draft, []), True


async def slip_for_edit(session: AsyncSession, number: str) -> Document:
    """A borrow slip that may still change, locked: a draft, or a rejected one (reopened as a draft, its reason
    kept); DomainError saying why not otherwise (waiting for approval, lent, cancelled)."""
    doc = await get_document(session, number, lock=True)
    if doc.type != BORROW:
        raise DomainError("NOT_BORROW", f"单据 {doc.number} 不是借条", "借条单号以 JH 开头；发送「借条」查看你的借条")
    if doc.status == "rejected":
        await reopen_document(session, doc)
    if doc.status != "draft":
        fix = (f"如需修改，请先发送「撤回 {doc.number}」，改好后再提交" if doc.status == "submitted"
               else f"发送「借条 {doc.number}」查看")
        raise DomainError("SLIP_CLOSED", f"借条 {doc.number} {STATUS_ZH[doc.status]}，不能再修改", fix)
    return doc


async def _lines(session: AsyncSession, doc: Document) -> list[DocumentLine]:
    return list(await session.scalars(select(DocumentLine).where(DocumentLine.document_id == doc.id)
                                      .order_by(DocumentLine.line_no)))


async def line_count(session: AsyncSession, doc: Document) -> int:
    """How many lines the slip has (read afresh)."""
    return await session.scalar(select(func.count()).select_from(DocumentLine)
                                .where(DocumentLine.document_id == doc.id)) or 0


async def _check_stock(session: AsyncSession, doc: Document, product: Product, batch: str, stock_qty: Decimal,
                       others: list[DocumentLine], today: date) -> None:
    """The slip's lines of this product (with this one) fit the warehouse's unexpired stock; a named batch is in
    stock there and not expired."""
    wh = await session.get_one(Warehouse, doc.warehouse_id)
    batches = await stock_batches(session, product.id, wh.id)
    unit = product.stock_unit
    listed = _batches_text(batches, unit, today)
    if batch:
        found = next((b for b in batches if b.code == batch), None)
        if found is None:
            raise DomainError("BATCH_NOT_IN_STOCK",
                              f"{product.name}（{product.sku}）的批次 {batch} 在 {wh.code} 没有库存",
                              f"请核对批次号；{listed}；或不写批次，按先到期先出", {"batch": batch})
        if found.expired(today):
            raise DomainError("BATCH_EXPIRED",
                              f"{product.name} 批次 {batch} 已于 {found.expiry} 过期，过期批次不能借出",
                              f"请改选未过期批次（{listed}），过期品请走报损流程", {"batch": batch})
        need = stock_qty + sum((ln.stock_qty for ln in others if ln.batch_code == batch), ZERO)
        if need > found.qty:
            raise DomainError("SHORT_STOCK", f"{wh.code} 的 {product.name} 批次 {batch} 只有 {fq(found.qty)}{unit}，"
                              f"本借条要借 {fq(need)}{unit}", "请减少数量，或分批次借出；" + listed)
    have = sum((b.qty for b in batches if not b.expired(today)), ZERO)
    need = stock_qty + sum((ln.stock_qty for ln in others), ZERO)
    if need > have:
        raise DomainError("SHORT_STOCK", f"{wh.code} 的 {product.name}（{product.sku}）未过期库存只有 "
                          f"{fq(have)}{unit}，本借条要借 {fq(need)}{unit}", "请减少数量，或先入库、调拨补足；" + listed,
                          {"available": fq(have), "needed": fq(need)})


@dataclass(frozen=True)
class LineChange:
    """What adding or changing a line did: the line, whether it merged into an existing one, and whether the
    customer's signature had to be taken again."""

    line: DocumentLine
    merged: bool
    signature_voided: bool


def _row(settings: Settings, doc: Document, line_no: int, product: Product, qty: Decimal, unit: str, batch: str,
         wh: Warehouse, today: date) -> dict:
    row = line_row(doc_type(BORROW), line_no, LineInput(product.sku, qty, unit, batch=batch), product, wh, today)
    if row["stock_qty"] > MAX_QTY:
        raise DomainError("QTY_TOO_BIG", f"第 {line_no} 行数量 {fq(row['stock_qty'])}{product.stock_unit} 过大"
                          f"（一行最多 {fq(MAX_QTY)}{product.stock_unit}）", "请核对数量和单位")
    return row


async def add_line(session: AsyncSession, settings: Settings, doc: Document, product: Product, qty: Decimal,
                   unit: str, batch: str, entry: str, now: datetime) -> LineChange:
    """Add a product to the draft slip (the same product and batch again: the quantities add up), checked against
    the unit rules and the warehouse's unexpired stock; a signature taken before is no longer valid."""
    today = now.astimezone(settings.timezone).date()
    wh = await session.get_one(Warehouse, doc.warehouse_id)
    unit = unit or product.stock_unit
    batch = batch.strip()
    lines = await _lines(session, doc)
    same = next((ln for ln in lines if ln.product_id == product.id and ln.batch_code == batch), None)
    if same is None and len(lines) >= MAX_LINES:
        raise DomainError("TOO_MANY_LINES", f"一张借条最多 {MAX_LINES} 行", "请先提交本借条，再开一张新的")
    line_no = same.line_no if same else max((ln.line_no for ln in lines), default=0) + 1
    row = _row(settings, doc, line_no, product, qty, unit, batch, wh, today)
    if same is not None:  # the same product and batch again: one line with the sum
        total_unit = same.unit if same.unit == row["unit"] else product.stock_unit
        total = same.qty + row["qty"] if same.unit == row["unit"] else same.stock_qty + row["stock_qty"]
        row = _row(settings, doc, line_no, product, total, total_unit, batch, wh, today)
    others = [ln for ln in lines if ln.product_id == product.id and ln is not same]
    await _check_stock(session, doc, product, batch, row["stock_qty"], others, today)
    if same is not None:
        for key in ("qty", "unit", "factor", "stock_qty"):
            setattr(same, key, row[key])
        if entry != same.entry:
            same.entry = "text" if "text" in (entry, same.entry) else entry
        line = same
    else:
        line = DocumentLine(**row, document_id=doc.id, entry=entry)
        session.add(line)
    await session.flush()
    session.expire(doc, ["lines"])
    return LineChange(line, same is not None, await void_signatures(session, doc))


async def set_line_qty(session: AsyncSession, settings: Settings, doc: Document, line_no: int, qty: Decimal,
                       unit: str, now: datetime) -> LineChange:
    """Change a line's quantity (a scanned line's too: its product and batch stay as scanned)."""
    today = now.astimezone(settings.timezone).date()
    lines = await _lines(session, doc)
    line = next((ln for ln in lines if ln.line_no == line_no), None)
    if line is None:
        raise DomainError("NO_LINE", f"借条 {doc.number} 没有第 {line_no} 行",
                          f"行号为 1–{len(lines)}；发送「借货」查看借条" if lines else "这张借条还没有任何行")
    product = await session.get_one(Product, line.product_id)
    wh = await session.get_one(Warehouse, doc.warehouse_id)
    row = _row(settings, doc, line_no, product, qty, unit or line.unit, line.batch_code, wh, today)
    others = [ln for ln in lines if ln.product_id == product.id and ln is not line]
    await _check_stock(session, doc, product, line.batch_code, row["stock_qty"], others, today)
    for key in ("qty", "unit", "factor", "stock_qty"):
        setattr(line, key, row[key])
    await session.flush()
    session.expire(doc, ["lines"])
    return LineChange(line, True, await void_signatures(session, doc))


async def drop_line(session: AsyncSession, doc: Document, line_no: int) -> bool:
    """Remove a line from the draft slip (the lines after it move up); whether a signature had to be voided."""
    lines = await _lines(session, doc)
    line = next((ln for ln in lines if ln.line_no == line_no), None)
    if line is None:
        raise DomainError("NO_LINE", f"借条 {doc.number} 没有第 {line_no} 行", "发送「借货」查看借条的行号")
    await session.delete(line)
    await session.flush()
    for ln in lines:
        if ln.line_no > line_no:
            ln.line_no -= 1
            await session.flush()  # one at a time: (document, line_no) stays unique at every step
    session.expire(doc, ["lines"])
    return await void_signatures(session, doc)


def set_due(doc: Document, due: date, today: date) -> None:
    """The slip's return date (not before today)."""
    if due < today:
        raise DomainError("DUE_PAST", f"归还日期 {due} 已经过了（今天是 {today}）", "请写今天或以后的日期")
    doc.due_date = due


async def signatures(session: AsyncSession, doc_id: int) -> int:
    """How many valid signature photos the slip has."""
    return await session.scalar(select(func.count()).select_from(Attachment).where(
        Attachment.document_id == doc_id, Attachment.kind == SIGNATURE)) or 0


async def void_signatures(session: AsyncSession, doc: Document) -> bool:
    """The slip changed after the customer signed: the signature photos are kept but no longer count."""
    t = Attachment.__table__.c
    done = await session.execute(update(Attachment.__table__).where(t.document_id == doc.id, t.kind == SIGNATURE)
                                 .values(kind=VOID_SIGNATURE))
    return bool(done.rowcount)


async def check_submittable(session: AsyncSession, doc: Document, today: date) -> None:
    """A slip goes to approval with at least one line, a return date not past and the customer's signature."""
    if not await _lines(session, doc):
        raise DomainError("EMPTY_SLIP", f"借条 {doc.number} 还没有任何商品",
                          "请先添加：借货 <客户> <条码> <数量> [批次]，或用「扫码」扫描商品")
    if doc.due_date is None or doc.due_date < today:
        raise DomainError("DUE_PAST", f"借条 {doc.number} 的归还日期 {doc.due_date or '未填写'} 已经过了",
                          "请改归还日期：借货 <客户> <归还日期>，例如：借货 C002 12-31")
    if not await signatures(session, doc.id):
        raise DomainError("NO_SIGNATURE", f"借条 {doc.number} 还没有客户签字，不能提交",
                          f"请先发送「签字 {doc.number}」，再发客户在借条上签字的照片，然后发送「借货 提交」")


# --- what is out on a slip --------------------------------------------------------------------------------------

Key = tuple[int, int, int]  # (product, warehouse, batch)


async def outstanding(session: AsyncSession, slip_ids: list[int]) -> dict[int, dict[Key, tuple[Decimal, Decimal]]]:
    """Per posted slip and (product, warehouse, batch): (lent, returned) in stock units, from the loan moves of
    the slip and of its posted returns (cancelled documents do not count)."""
    if not slip_ids:
        return {}
    m, d = StockMove.__table__.c, Document.__table__.c
    out: dict[int, dict[Key, list[Decimal]]] = defaultdict(lambda: defaultdict(lambda: [ZERO, ZERO]))
    base = (select(m.product_id, m.warehouse_id, m.batch_id, func.sum(m.qty))
            .join(Document.__table__, d.id == m.document_id)
            .where(m.bucket == ON_LOAN, d.status == "posted"))
    lent = await session.execute(base.add_columns(d.id).where(d.type == BORROW, d.id.in_(slip_ids))
                                 .group_by(d.id, m.product_id, m.warehouse_id, m.batch_id))
    for p, w, b, q, sid in lent.all():
        out[sid][(p, w, b)][0] += q
    back = await session.execute(base.add_columns(d.ref_document_id).where(d.type == RETURN,
                                                                          d.ref_document_id.in_(slip_ids))
                                 .group_by(d.ref_document_id, m.product_id, m.warehouse_id, m.batch_id))
    for p, w, b, q, sid in back.all():
        out[sid][(p, w, b)][1] -= q
    return {sid: {k: (v[0], v[1]) for k, v in keys.items()} for sid, keys in out.items()}


@dataclass(frozen=True)
class OutItem:
    """One product and batch of a slip: lent, returned and still out, in the product's stock unit."""

    sku: str
    name: str
    barcode: str
    batch: str
    lent: Decimal
    returned: Decimal
    unit: str

    @property
    def out(self) -> Decimal:
        """Still with the customer."""
        return self.lent - self.returned


@dataclass(frozen=True)
class SlipState:
    """A slip as its lists show it: who, for whom, since when, due when, and each product's lent/returned/out."""

    doc: Document
    customer: str
    customer_name: str
    warehouse: str
    created_by: str
    items: list[OutItem]
    overdue_days: int = 0

    @property
    def out(self) -> Decimal:
        """Everything still out (stock units summed)."""
        return sum((i.out for i in self.items), ZERO)


async def _states(session: AsyncSession, docs: list[Document], today: date) -> list[SlipState]:
    if not docs:
        return []
    amounts = await outstanding(session, [d.id for d in docs])
    pids = {k[0] for v in amounts.values() for k in v}
    bids = {k[2] for v in amounts.values() for k in v}
    products = {p.id: p for p in await session.scalars(select(Product).where(Product.id.in_(pids or {0})))}
    batches = dict((await session.execute(select(Batch.id, Batch.code).where(Batch.id.in_(bids or {0}))))
                   .tuples().all())
    cust = {c.id: c for c in await session.scalars(select(Customer).where(
        Customer.id.in_({d.customer_id for d in docs if d.customer_id} or {0})))}
    users = dict((await session.execute(select(User.id, User.name).where(
        User.id.in_({d.created_by_id for d in docs if d.created_by_id} or {0})))).tuples().all())
    whs = dict((await session.execute(select(Warehouse.id, Warehouse.code))).tuples().all())
    out = []
    for d in docs:
        items = []
        for (p, _w, b), (lent, back) in sorted(amounts.get(d.id, {}).items()):
            pr = products[p]
            items.append(OutItem(pr.sku, pr.name, pr.barcode or "", batches.get(b, ""), lent, back, pr.stock_unit))
        c = cust.get(d.customer_id or 0)
        late = (today - d.due_date).days if d.due_date and d.status == "posted" and d.due_date < today else 0
        out.append(SlipState(d, c.code if c else "", c.name if c else "", whs.get(d.warehouse_id or 0, ""),
                             users.get(d.created_by_id or 0, ""), items, late))
    return out


async def slip_state(session: AsyncSession, doc: Document, today: date) -> SlipState:
    """One slip with what is out on it."""
    return (await _states(session, [doc], today))[0]


async def open_slips(session: AsyncSession, today: date, *, created_by: int | None = None,
                     customer_id: int | None = None) -> list[SlipState]:
    """Posted slips with something still out (by their author, or for a customer), the longest overdue first."""
    stmt = select(Document).where(Document.type == BORROW, Document.status == "posted",
                                  Document.returned.is_(False))
    if created_by is not None:
        stmt = stmt.where(Document.created_by_id == created_by)
    if customer_id is not None:
        stmt = stmt.where(Document.customer_id == customer_id)
    docs = list(await session.scalars(stmt.order_by(Document.due_date, Document.id)))
    return [s for s in await _states(session, docs, today) if s.out > 0]


async def pending_slips(session: AsyncSession, *, created_by: int | None = None,
                        customer_id: int | None = None) -> list[Document]:
    """Slips not lent yet: drafts (of the author only) and those waiting for approval or rejected."""
    stmt = select(Document).where(Document.type == BORROW, Document.status.in_(("draft", "submitted", "rejected")))
    if created_by is not None:
        stmt = stmt.where(Document.created_by_id == created_by)
    if customer_id is not None:
        stmt = stmt.where(Document.customer_id == customer_id, Document.status != "draft")
    return list(await session.scalars(stmt.order_by(Document.id)))


# --- returns ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReturnWant:
    """A product coming back: stock-unit quantity, optionally one batch, and how the line was entered."""

    product: Product
    stock_qty: Decimal
    batch: str = ""
    entry: str = "text"


@dataclass(frozen=True)
class ReturnResult:
    """The posted return, what came back per line (sku, name, batch, qty, unit), and the slip afterwards."""

    document: Document
    back: list[tuple[str, str, str, Decimal, str]]
    slip: SlipState


def to_stock(product: Product, qty: Decimal, unit: str) -> Decimal:
    """A typed quantity in the product's stock unit (the whole-number rule applies)."""
    return to_stock_qty(product, unit or product.stock_unit, qty)[1]


async def post_return(session: AsyncSession, settings: Settings, number: str, wants: list[ReturnWant] | None,
                      user_id: int, now: datetime) -> ReturnResult:
    """Post a borrow return against the slip at once (no approval): `wants` None returns everything still out;
    each product comes back to the batches it was lent from (first to expire first). Refused: a slip not lent
    (yet), a product not on it, more than is still out."""
    slip = await get_document(session, number, lock=True)
    if slip.type != BORROW:
        raise DomainError("NOT_BORROW", f"单据 {slip.number} 不是借条", "归还要写借条号（JH 开头）；发送「借条」查看")
    if slip.status != "posted":
        why = ("还在审批中，批准借出后才能归还" if slip.status == "submitted"
               else f"状态为「{STATUS_ZH[slip.status]}」，没有借出")
        raise DomainError("SLIP_NOT_LENT", f"借条 {slip.number} {why}", f"发送「单据 {slip.number}」查看")
    today = now.astimezone(settings.timezone).date()
    amounts = (await outstanding(session, [slip.id])).get(slip.id, {})
    batches = {b.id: (b.code, b.expiry) for b in await session.scalars(
        select(Batch).where(Batch.id.in_({k[2] for k in amounts} or {0})))}
    out = {k: lent - back for k, (lent, back) in amounts.items() if lent - back > 0}
    if not out:
        raise DomainError("ALL_RETURNED", f"借条 {slip.number} 已全部归还", "发送「借条」查看还有哪些借条未还")
    products = {p.id: p for p in await session.scalars(select(Product).where(Product.id.in_({k[0] for k in out})))}
    if wants is None:
        wants = [ReturnWant(products[k[0]], q, batches[k[2]][0], "") for k, q in sorted(out.items())]
    taken: list[tuple[Key, Decimal, str]] = []
    left = dict(out)
    for w in wants:
        keys = [k for k in left if k[0] == w.product.id and (not w.batch or batches[k[2]][0] == w.batch)]
        keys.sort(key=lambda k: (batches[k[2]][1] is None, batches[k[2]][1] or date.max, k[2]))
        have = sum((left[k] for k in keys), ZERO)
        unit = w.product.stock_unit
        if not keys:
            on_slip = "、".join(sorted({f"{products[k[0]].name}（{products[k[0]].sku}）" for k in out}))
            what = f"{w.product.name}（{w.product.sku}）" + (f" 批次 {w.batch}" if w.batch else "")
            raise DomainError("NOT_ON_SLIP", f"借条 {slip.number} 上没有未还的 {what}",
                              f"这张借条未还的是：{on_slip}；请核对商品或批次")
        if w.stock_qty > have:
            raise DomainError("OVER_RETURN", f"借条 {slip.number} 上 {w.product.name} 只剩 {fq(have)}{unit} 未还，"
                              f"本次归还 {fq(w.stock_qty)}{unit} 超出了",
                              f"归还数量不能超过未还数量：请改为 {fq(have)}{unit} 或更少；多出的部分不是这张借条借出的",
                              {"out": fq(have), "returned": fq(w.stock_qty)})
        need = w.stock_qty
        for k in keys:
            take = min(need, left[k])
            if take > 0:
                taken.append((k, take, w.entry))
                left[k] -= take
                need -= take
    dt = doc_type(RETURN)
    doc = Document(number=await next_number(session, dt.prefix, now, settings.timezone), type=RETURN,
                   status="draft", warehouse_id=slip.warehouse_id, customer_id=slip.customer_id,
                   ref_document_id=slip.id, created_by_id=user_id,
                   validation_mode=dt.validation_mode(settings.validation), created_at=now)
    wids = {k[1] for k, _, _ in taken}
    whs = {w.id: w for w in await session.scalars(select(Warehouse).where(Warehouse.id.in_(wids)))}
    rows, back = [], []
    for i, ((p, w, b), q, entry) in enumerate(taken, start=1):
        product = products[p]
        row = line_row(dt, i, LineInput(product.sku, q, product.stock_unit, batch=batches[b][0]), product, whs[w],
                       today)
        rows.append({**row, "entry": entry})
        back.append((product.sku, product.name, batches[b][0], q, product.stock_unit))
    doc = await insert_document(session, doc, rows)
    await submit_document(session, settings, doc, now)
    await post_document(session, settings, doc, now)
    if not any(q > 0 for q in left.values()):
        slip.returned = True  # fully returned: it leaves the open slips
        await session.flush()
    return ReturnResult(doc, back, await slip_state(session, slip, today))


# --- the return rate --------------------------------------------------------------------------------------------


@dataclass
class RateRow:
    """One customer's (or everyone's) loans that fell due in the period: quantity lent, returned by the due date,
    returned late, still out, and the number of slips."""

    code: str
    name: str
    lent: Decimal = ZERO
    on_time: Decimal = ZERO
    late: Decimal = ZERO
    slips: int = 0
    unreturned: list[str] = field(default_factory=list)

    @property
    def out(self) -> Decimal:
        """Lent and not returned at all yet."""
        return self.lent - self.on_time - self.late

    @property
    def rate(self) -> Decimal | None:
        """Returned by the due date ÷ lent (None when nothing fell due)."""
        return self.on_time / self.lent if self.lent else None


@dataclass(frozen=True)
class ReturnRates:
    """The return rate of the loans that fell due between `start` and `end` (inclusive), per customer and overall."""

    start: date
    end: date
    customers: list[RateRow]
    overall: RateRow


def month_bounds(month: date) -> tuple[date, date]:
    """The first and last day of the month of `month`."""
    return month.replace(day=1), month.replace(day=calendar.monthrange(month.year, month.month)[1])


async def return_rates(session: AsyncSession, tz: ZoneInfo, start: date, end: date, as_of: date) -> ReturnRates:
    """Return rate = quantity returned by the due date ÷ quantity lent, over the posted slips whose return date
    falls between `start` and `end` and is already past on `as_of` (a slip due today may still come back today).
    A return counts as on time when it was posted on or before the due date (local dates in `tz`). Quantities
    are in each product's stock unit, summed as the seed's return-rate figure does."""
    last = min(end, as_of - timedelta(days=1))
    d, dl = Document.__table__.c, DocumentLine.__table__.c
    slips = (await session.execute(
        select(d.id, d.number, d.due_date, d.customer_id, func.sum(dl.stock_qty))
        .join(DocumentLine.__table__, dl.document_id == d.id)
        .where(d.type == BORROW, d.status == "posted", d.due_date >= start, d.due_date <= last)
        .group_by(d.id, d.number, d.due_date, d.customer_id))).all()
    ids = [s[0] for s in slips]
    returns = (await session.execute(
        select(d.ref_document_id, d.posted_at, func.sum(dl.stock_qty))
        .join(DocumentLine.__table__, dl.document_id == d.id)
        .where(d.type == RETURN, d.status == "posted", d.ref_document_id.in_(ids or [0]))
        .group_by(d.id, d.ref_document_id, d.posted_at))).all()
    back: dict[int, list[tuple[date, Decimal]]] = defaultdict(list)
    for sid, at, q in returns:
        back[sid].append((at.astimezone(tz).date(), q))
    cust = {c.id: c for c in await session.scalars(select(Customer).where(
        Customer.id.in_({s[3] for s in slips if s[3]} or {0})))}
    rows: dict[int, RateRow] = {}
    overall = RateRow("", "合计")
    for sid, number, due, cid, lent in slips:
        c = cust.get(cid or 0)
        row = rows.setdefault(cid or 0, RateRow(c.code if c else "", c.name if c else "（无客户）"))
        on_time = sum((q for day, q in back[sid] if day <= due), ZERO)
        late = sum((q for day, q in back[sid] if day > due), ZERO)
        for r in (row, overall):
            r.lent += lent
            r.on_time += on_time
            r.late += late
            r.slips += 1
            if on_time + late < lent:
                r.unreturned.append(number)
    ordered = sorted(rows.values(), key=lambda r: (r.rate if r.rate is not None else Decimal(2), r.code))
    return ReturnRates(start, end, ordered, overall)
