"""Purchasing: a request with the replenishment engine's suggestion and its why, submitted for sign-off; the open
purchase orders with ordered and received per product; a receipt against an order (partial, over-receipt rule)."""

from __future__ import annotations

import asyncio
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.approvals import engine
from core.approvals.engine import Actor
from core.config import Settings
from core.errors import DomainError
from core.ledger.doctypes import STATUS_ZH, doc_type
from core.ledger.documents import LineInput, create_document, get_document, post_document, submit_document
from core.ledger.ordering import ORDER, REQUEST, order_of, refuse_if_open
from core.ledger.units import to_stock_qty
from core.models import Batch, Document, DocumentLine, FinanceEntry, Product, Supplier, User, Warehouse
from core.models.approvals import Approval
from core.replenish.history import LT_MIN_OBSERVATIONS
from core.replenish.plan import plan
from core.replenish.suggest import Suggestion, build_inputs
from core.replenish.why import why_zh
from core.types import fq, q6

RECEIPT = "purchase_receipt"
OPEN_ORDER_STATUSES = ("submitted", "posted")  # as the replenishment engine counts them on order
MAX_QTY = Decimal(10) ** 9  # stock units on one line: far beyond any real purchase, well inside the ledger's range
MAX_PRICE = Decimal(10) ** 9
MAX_ORDERS_LISTED = 10
ZERO = Decimal(0)
_QTY = re.compile(r"^(\d+(?:\.\d+)?)([^\d\s.+\-/*]*)$")
_FULL_DATE = re.compile(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?$")
_COMPACT_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_SHORT_DATE = re.compile(r"^(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?$")


# --- what people type ---------------------------------------------------------------------------------------------


def looks_like_qty(token: str) -> bool:
    """True for a token a user meant as a quantity (it starts with a digit: 60, 6桶, 3.5箱, 1e30)."""
    t = unicodedata.normalize("NFKC", token).strip()
    return bool(t) and (t[0].isdigit() or (t[0] in "+-." and t[1:2].isdigit()))


def parse_qty(token: str, product: Product) -> tuple[Decimal, str]:
    """"60", "60kg", "6桶" → (quantity, unit; the stock unit when none is written). DomainError naming the rule for
    anything else: scientific notation (1e30), signs, zero, more than 6 decimals."""
    t = unicodedata.normalize("NFKC", token).strip()
    m = _QTY.match(t)
    example = f"60、60{product.stock_unit}" + (f" 或 6{product.purchase_unit}" if product.purchase_unit
                                               and product.purchase_unit != product.stock_unit else "")
    if m is None:
        raise DomainError("BAD_QTY", f"看不懂数量「{token}」：数量要写成普通的正数（可带单位），不能用科学计数法、"
                          "正负号或文字", f"请改为例如 {example}", {"qty": token})
    try:
        qty = Decimal(m.group(1))
    except InvalidOperation:  # pragma: no cover - the pattern lets only digits through
        raise DomainError("BAD_QTY", f"看不懂数量「{token}」", f"请改为例如 {example}") from None
    if qty <= 0:
        raise DomainError("BAD_QTY", f"数量 {token} 必须大于 0", f"请改为例如 {example}", {"qty": token})
    if qty != qty.quantize(Decimal("0.000001")):
        raise DomainError("BAD_QTY", f"数量 {token} 的小数超过 6 位", "请最多写 6 位小数，或改用更小的单位")
    return qty, m.group(2) or product.stock_unit


def parse_price(token: str) -> Decimal:
    """A unit price as typed (45, 45.5); DomainError for anything else."""
    t = unicodedata.normalize("NFKC", token).strip().removeprefix("¥").removesuffix("元")
    if not re.fullmatch(r"\d+(?:\.\d{1,6})?", t) or Decimal(t) > MAX_PRICE:
        raise DomainError("BAD_PRICE", f"看不懂单价「{token}」：单价要写成不超过 {fq(MAX_PRICE)} 的普通数字",
                          "例如：单价 45 或 单价 45.5（按所写单位的价格）")
    return Decimal(t)


def parse_date(token: str, today: date) -> date:
    """An expiry date: 2027-06-30, 2027/6/30, 2027年6月30日, 20270630, or 6-30 / 6月30日 (the next such day).
    DomainError for a token that is no date or a day that does not exist."""
    t = unicodedata.normalize("NFKC", token).strip()
    try:
        if m := (_FULL_DATE.match(t) or _COMPACT_DATE.match(t)):
            return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        if m := _SHORT_DATE.match(t):
            day = date(today.year, int(m.group(1)), int(m.group(2)))
            return day if day >= today else date(today.year + 1, day.month, day.day)
    except ValueError:
        raise DomainError("BAD_DATE", f"日期「{token}」不存在", "请写到期日，例如 2027-06-30 或 6月30日") from None
    raise DomainError("BAD_DATE", f"看不懂到期日「{token}」", "请写到期日，例如 2027-06-30、20270630 或 6月30日")


# --- the engine's suggestion --------------------------------------------------------------------------------------


async def suggestion_for(session: AsyncSession, settings: Settings, product_id: int,
                         today: date) -> Suggestion | None:
    """The replenishment engine's suggestion for one product over all warehouses, as `jxcbot replenish suggest
    --all` gives it (the category shrinkage needs every product's history, so the whole ledger is read); None for
    an unknown product."""
    h, inputs, _chosen = await build_inputs(session, settings, today=today)
    i = h.index.rows().get(product_id)
    if i is None:
        return None
    result = await asyncio.to_thread(plan, inputs)  # numpy: off the event loop
    why = result.explain(i).as_decimal()
    return Suggestion(sku=h.index.skus[i], name=h.index.names[i], unit=h.index.units[i], qty=why.suggested,
                      explanation=why, buffer_days=Decimal(int(h.index.buffer_days[i])),
                      lead_learned=bool(h.lead.learned[i]), censored_days=int(h.stockout[i].sum()),
                      auto_replenish=bool(h.index.auto_replenish[i]))


def suggestion_why(s: Suggestion, today: date) -> str:
    """The suggestion's why in one paragraph (forecast, lead time, buffer, safety stock, position, rounding)."""
    return why_zh(s.explanation, s.unit, s.buffer_days, today)


def suggestion_notes(s: Suggestion) -> list[str]:
    """What the why leaves out: where the lead time came from, censored stock-out days."""
    notes = []
    if not s.lead_learned:
        notes.append(f"提前期取商品档案值（其供应商关联采购订单的入库不足 {LT_MIN_OBSERVATIONS} 次）")
    if s.censored_days:
        notes.append(f"{s.censored_days} 天缺货（或无库存）的销售未参与预测")
    return notes


# --- supplier, price and warehouse of a request --------------------------------------------------------------------


@dataclass(frozen=True)
class LastReceipt:
    """A product's latest posted purchase receipt line: where its supplier and unit price come from."""

    number: str
    supplier_id: int | None
    unit: str
    factor: int
    unit_price: Decimal
    tax_rate: Decimal


async def last_receipt(session: AsyncSession, product_id: int) -> LastReceipt | None:
    """The product's latest posted receipt line (by posting time), or None."""
    stmt = (select(Document.number, Document.supplier_id, DocumentLine.unit, DocumentLine.factor,
                   DocumentLine.unit_price, DocumentLine.tax_rate)
            .join(Document, Document.id == DocumentLine.document_id)
            .where(Document.type == RECEIPT, Document.status == "posted", DocumentLine.product_id == product_id)
            .order_by(Document.posted_at.desc(), Document.id.desc(), DocumentLine.line_no).limit(1))
    row = (await session.execute(stmt)).first()
    return LastReceipt(*row) if row is not None else None


async def product_supplier(session: AsyncSession, product_id: int) -> Supplier | None:
    """The product's supplier: the supplier of its latest posted receipt that names one (as the replenishment engine
    learns lead times), else of its latest purchase order; None when it was never bought."""
    for doc_types in ((RECEIPT,), (ORDER,)):
        stmt = (select(Document.supplier_id).join(DocumentLine, DocumentLine.document_id == Document.id)
                .where(Document.type.in_(doc_types), Document.status == "posted", Document.supplier_id.is_not(None),
                       DocumentLine.product_id == product_id)
                .order_by(Document.posted_at.desc(), Document.id.desc()).limit(1))
        sid = await session.scalar(stmt)
        if sid is not None:
            return await session.get(Supplier, sid)
    return None


async def supplier_by(session: AsyncSession, text: str) -> Supplier:
    """The supplier `text` names: its code, its exact name or a unique fragment of its name."""
    word = text.strip()
    exact = await session.scalar(select(Supplier).where(or_(Supplier.code == word, Supplier.name == word)))
    if exact is not None:
        return exact
    found = list(await session.scalars(select(Supplier).where(Supplier.name.contains(word))
                                       .order_by(Supplier.code).limit(6))) if word else []
    if len(found) == 1:
        return found[0]
    if found:
        raise DomainError("AMBIGUOUS_SUPPLIER", f"「{word}」匹配到多个供应商：" + "、".join(
            f"{s.name}（{s.code}）" for s in found[:5]), "请写供应商编码或更完整的名称")
    some = list(await session.scalars(select(Supplier).order_by(Supplier.code).limit(5)))
    hint = "，例如：" + "、".join(f"{s.code} {s.name}" for s in some) if some else ""
    raise DomainError("UNKNOWN_SUPPLIER", f"没有找到供应商「{word}」",
                      f"请写供应商编码或名称{hint}；新供应商请先由管理员导入供应商档案")


async def receiving_warehouse(session: AsyncSession) -> Warehouse:
    """Where purchases arrive: the central warehouse (the first by code), else the first warehouse."""
    for stmt in (select(Warehouse).where(Warehouse.kind == "central"), select(Warehouse)):
        found = (await session.scalars(stmt.order_by(Warehouse.code).limit(1))).first()
        if found is not None:
            return found
    raise DomainError("NO_WAREHOUSE", "还没有任何仓库，无法采购", "请先由管理员导入仓库档案")


def _price_for(unit_price: Decimal, from_factor: int, to_factor: int) -> Decimal:
    """A price per `from_factor` stock units as the price per `to_factor` stock units."""
    return unit_price if from_factor == to_factor else q6(unit_price * to_factor / from_factor)


# --- requests -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PurchaseRequest:
    """A submitted request with what it was made from: the suggestion, the supplier and where the price came from.

    qty / unit: the request's line as written; stock_qty: in the product's stock unit; asked: True when the
    requester gave the quantity (else it is the suggestion); price_from: the receipt the unit price came from ("" if
    the requester gave it or there was none); notes: warnings for the approver (below MOQ, off pack size)."""

    doc: Document
    product: Product
    supplier: Supplier
    warehouse: Warehouse
    qty: Decimal
    unit: str
    stock_qty: Decimal
    unit_price: Decimal
    tax_rate: Decimal
    asked: bool
    suggestion: Suggestion | None
    price_from: str
    approval: Approval | None
    notes: list[str] = field(default_factory=list)

    @property
    def amount(self) -> Decimal:
        """Quantity × unit price before tax (what approval levels compare)."""
        return q6(self.qty * self.unit_price)


def in_purchase_units(product: Product, stock_qty: Decimal) -> tuple[Decimal, str]:
    """A stock quantity as whole purchase units when it is one (50 kg → 5 桶), else in the stock unit."""
    factor = product.purchase_factor or 1
    if factor > 1 and product.purchase_unit and stock_qty % factor == 0:
        return stock_qty / factor, product.purchase_unit
    return stock_qty, product.stock_unit


def _pack_notes(product: Product, stock_qty: Decimal) -> list[str]:
    notes = []
    if product.moq and stock_qty < product.moq:
        notes.append(f"低于起订量 {fq(product.moq)}{product.stock_unit}")
    if product.pack_size and product.pack_size > 1 and stock_qty % product.pack_size:
        notes.append(f"不是包装量 {fq(product.pack_size)}{product.stock_unit} 的整数倍")
    return notes


async def request_purchase(session: AsyncSession, settings: Settings, actor: Actor, product: Product, *,
                           qty: Decimal | None = None, unit: str | None = None, reason: str = "",
                           supplier: str | None = None, unit_price: Decimal | None = None, now: datetime,
                           suggestion: Suggestion | None = None) -> PurchaseRequest:
    """Create and submit a purchase request for one product, opening its sign-off (the manager's; above
    `[approvals.purchase_request] second_above` finance's too). Without `qty` the engine's suggestion is the
    quantity (as whole purchase units when it is one); with it the suggestion is kept beside it. The supplier is
    the product's (its latest receipt's) unless named; the unit price and tax rate come from the latest receipt
    unless given. A product with an open request is refused naming it. The 02:00 job calls this too (passing the
    suggestion it already has)."""
    await refuse_if_open(session, settings, [product.id])  # early and cheap; the submit hook checks again
    today = now.astimezone(settings.timezone).date()
    if suggestion is None:
        suggestion = await suggestion_for(session, settings, product.id, today)
    if qty is None:
        if suggestion is None or suggestion.qty <= 0:
            why = f"引擎的理由：{suggestion_why(suggestion, today)}" if suggestion is not None else ""
            raise DomainError("NOTHING_TO_BUY", f"补货引擎建议 {product.name}（{product.sku}）暂不采购。{why}",
                              f"如仍需采购，请写明数量和原因，例如：采购申请 {product.sku} "
                              f"{fq(product.moq or 1)}{product.stock_unit} 活动备货")
        qty, unit = in_purchase_units(product, suggestion.qty)
        asked = False
    else:
        asked = True
    unit = unit or product.stock_unit
    _factor, stock_qty = to_stock_qty(product, unit, qty)
    if stock_qty > MAX_QTY:
        raise DomainError("QTY_TOO_BIG", f"数量 {fq(qty)}{unit} 过大（一张申请最多 {fq(MAX_QTY)}{product.stock_unit}）",
                          "请核对数量和单位")
    chosen = await supplier_by(session, supplier) if supplier else await product_supplier(session, product.id)
    if chosen is None:
        raise DomainError("NO_SUPPLIER",
                          f"商品 {product.name}（{product.sku}）还没有采购入库记录，不知道向哪家供应商采购",
                          f"请写明供应商，例如：采购申请 {product.sku} {fq(qty)}{unit} 供应商 <编码或名称>")
    last = await last_receipt(session, product.id)
    price_from, tax = "", ZERO
    if last is not None:
        tax = last.tax_rate
    if unit_price is None:
        unit_price = ZERO
        if last is not None:
            unit_price, price_from = _price_for(last.unit_price, last.factor, _factor), last.number
    warehouse = await receiving_warehouse(session)
    line = LineInput(product.sku, qty, unit, unit_price=unit_price, tax_rate=tax)
    doc = await create_document(session, settings, REQUEST, [line], warehouse=warehouse.code, supplier=chosen.code,
                                created_by=actor.person.name, note=reason.strip(), now=now)
    approval = await engine.submit_for_approval(session, settings, doc, actor, now)
    return PurchaseRequest(doc, product, chosen, warehouse, qty, unit, stock_qty, unit_price, tax, asked, suggestion,
                           price_from, approval, _pack_notes(product, stock_qty) if asked else [])


# --- orders -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderLine:
    """One product of a purchase order: ordered and received in stock units, its price per the order line's unit."""

    product: Product
    unit: str  # the order line's unit
    factor: int
    ordered: Decimal  # stock units
    received: Decimal  # stock units, by posted receipts naming the order
    unit_price: Decimal  # per the order line's unit
    tax_rate: Decimal
    warehouse_id: int

    @property
    def outstanding(self) -> Decimal:
        """Still to come (never below zero: an allowed over-receipt leaves nothing outstanding)."""
        return max(self.ordered - self.received, ZERO)

    def typed(self, stock_qty: Decimal) -> str:
        """A stock quantity as one would type it: in the order's unit when whole (6桶), else the stock unit."""
        if self.factor > 1 and stock_qty and stock_qty % self.factor == 0:
            return f"{fq(stock_qty / self.factor)}{self.unit}"
        return f"{fq(stock_qty)}{self.product.stock_unit}"

    def in_unit(self, stock_qty: Decimal) -> str:
        """A stock quantity as people read it: in the order's unit when whole, with the stock unit beside it."""
        shown = self.typed(stock_qty)
        in_stock = f"{fq(stock_qty)}{self.product.stock_unit}"
        return shown if shown == in_stock else f"{shown}（{in_stock}）"


@dataclass(frozen=True)
class OrderView:
    """A purchase order with its supplier, warehouse, purchaser, request and its lines' receipts."""

    doc: Document
    supplier: str
    warehouse: str
    purchaser: str
    request: str
    lines: list[OrderLine]
    receipts: int

    @property
    def open(self) -> bool:
        """Placed and not fully received."""
        return self.doc.status in OPEN_ORDER_STATUSES and any(ln.outstanding > 0 for ln in self.lines)


async def _received(session: AsyncSession, order_ids: list[int]) -> dict[tuple[int, int], Decimal]:
    """Stock units received per (order, product) by posted receipts naming the orders."""
    if not order_ids:
        return {}
    stmt = (select(Document.ref_document_id, DocumentLine.product_id, func.sum(DocumentLine.stock_qty))
            .join(Document, Document.id == DocumentLine.document_id)
            .where(Document.type == RECEIPT, Document.status == "posted", Document.ref_document_id.in_(order_ids))
            .group_by(Document.ref_document_id, DocumentLine.product_id))
    return {(oid, pid): Decimal(q) for oid, pid, q in (await session.execute(stmt)).all()}


async def order_views(session: AsyncSession, docs: list[Document]) -> list[OrderView]:
    """The orders with their lines (one per product) and what was received of each."""
    ids = [d.id for d in docs]
    if not ids:
        return []
    received = await _received(session, ids)
    receipts = dict((await session.execute(
        select(Document.ref_document_id, func.count()).where(Document.type == RECEIPT, Document.status == "posted",
                                                            Document.ref_document_id.in_(ids))
        .group_by(Document.ref_document_id))).all())
    lines = list(await session.scalars(select(DocumentLine).where(DocumentLine.document_id.in_(ids))
                                       .order_by(DocumentLine.document_id, DocumentLine.line_no)))
    products = {p.id: p for p in await session.scalars(select(Product).where(
        Product.id.in_({ln.product_id for ln in lines})))} if lines else {}
    names = {}
    for model, key in ((Supplier, "supplier_id"), (Warehouse, "warehouse_id"), (User, "created_by_id")):
        wanted = {getattr(d, key) for d in docs} - {None}
        rows = await session.scalars(select(model).where(model.id.in_(wanted))) if wanted else []
        names[key] = {r.id: (f"{r.name}（{r.code}）" if model is Supplier else r.code if model is Warehouse
                             else r.name) for r in rows}
    refs = {d.ref_document_id for d in docs} - {None}
    requests = dict((await session.execute(select(Document.id, Document.number).where(Document.id.in_(refs))))
                    .all()) if refs else {}
    out = []
    for d in docs:
        per_product: dict[int, OrderLine] = {}
        for ln in (x for x in lines if x.document_id == d.id):
            got = per_product.get(ln.product_id)
            if got is None:
                per_product[ln.product_id] = OrderLine(products[ln.product_id], ln.unit, ln.factor, ln.stock_qty,
                                                       received.get((d.id, ln.product_id), ZERO), ln.unit_price,
                                                       ln.tax_rate, ln.warehouse_id)
            else:  # the same product twice on one order: one line, its quantities added
                per_product[ln.product_id] = OrderLine(got.product, got.unit, got.factor, got.ordered + ln.stock_qty,
                                                       got.received, got.unit_price, got.tax_rate, got.warehouse_id)
        out.append(OrderView(d, names["supplier_id"].get(d.supplier_id, "—"),
                             names["warehouse_id"].get(d.warehouse_id, "—"),
                             names["created_by_id"].get(d.created_by_id, "—"),
                             requests.get(d.ref_document_id, ""), list(per_product.values()), receipts.get(d.id, 0)))
    return out


async def open_orders(session: AsyncSession) -> list[OrderView]:
    """The placed purchase orders not fully received, oldest first."""
    docs = list(await session.scalars(select(Document).where(Document.type == ORDER,
                                                             Document.status.in_(OPEN_ORDER_STATUSES))
                                      .order_by(Document.id)))
    return [v for v in await order_views(session, docs) if v.open]


async def the_order(session: AsyncSession, number: str, *, lock: bool = False) -> Document:
    """A purchase order by number (its row locked when asked); DomainError when it is no order."""
    doc = await get_document(session, number, lock=lock)
    if doc.type != ORDER:
        raise DomainError("NOT_AN_ORDER", f"单据 {doc.number} 是{doc_type(doc.type).name_zh}，不是采购订单",
                          "请写采购单号（CG 开头）；发送「采购单」查看未收齐的采购单")
    return doc


async def order_for_request(session: AsyncSession, request: Document) -> OrderView | None:
    """The order an approved request placed, with its lines (None before the approval)."""
    order = await order_of(session, request.id)
    return (await order_views(session, [order]))[0] if order is not None else None


# --- receipts -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceiptLine:
    """One line to receive as typed: the product (barcode, SKU or name on the order), the quantity, batch, expiry."""

    product: str
    qty: str
    batch: str = ""
    expiry: str = ""


@dataclass(frozen=True)
class Receipt:
    """A posted receipt against an order: the receipt, the order after it, the amount and payable it booked."""

    receipt: Document
    order: OrderView
    lines: list[tuple[OrderLine, Decimal, str, str, date | None]]  # order line, stock qty, as typed, batch, expiry
    amount: Decimal  # Σ quantity × unit price
    payable: Decimal  # Σ amount × (1 + tax rate), as booked

    @property
    def closed(self) -> bool:
        """The order is fully received now."""
        return not self.order.open


def _on_order(view: OrderView, text: str, i: int) -> OrderLine:
    """The order's line for what the user typed: barcode or SKU exactly, else a unique name fragment."""
    t = text.strip()
    exact = [ln for ln in view.lines if t in (ln.product.sku, ln.product.barcode)]
    named = exact or [ln for ln in view.lines if t and t in ln.product.name]
    if len(named) == 1:
        return named[0]
    listed = "、".join(f"{ln.product.name}（{ln.product.sku}）" for ln in view.lines)
    if named:
        raise DomainError("AMBIGUOUS_PRODUCT", f"第 {i} 行：「{t}」匹配到采购单 {view.doc.number} 上的多个商品",
                          f"请写条码或 SKU：{listed}")
    raise DomainError("NOT_ON_ORDER", f"第 {i} 行：商品「{t}」不在采购单 {view.doc.number} 上",
                      f"该单的商品：{listed}；不在单上的到货请先发「采购申请」，审批后再收货")


def _outstanding_lines(view: OrderView) -> list[tuple[OrderLine, Decimal, str]]:
    """Everything still to come, each in the order's unit when whole (else the stock unit)."""
    out = []
    for ln in view.lines:
        left = ln.outstanding
        if left <= 0:
            continue
        if ln.product.batch_tracked:
            p = ln.product
            raise DomainError("BATCH_REQUIRED", f"{p.name}（{p.sku}）按批次管理，收货要写批次和到期日，不能整单收货",
                              f"请逐个商品收货，例如：收货 {view.doc.number} {p.sku} {ln.typed(left)} <批次> <到期日>")
        if ln.factor > 1 and left % ln.factor == 0:
            out.append((ln, left / ln.factor, ln.unit))
        else:
            out.append((ln, left, ln.product.stock_unit))
    return out


async def _check_batch(session: AsyncSession, number: str, ln: OrderLine, batch: str, expiry: date | None,
                       i: int) -> None:
    """A batch-tracked product needs a batch, and a new batch its expiry date."""
    p = ln.product
    if not p.batch_tracked:
        return
    if not batch:
        raise DomainError("BATCH_REQUIRED", f"第 {i} 行：{p.name}（{p.sku}）按批次管理，缺少批次号",
                          f"请写批次和到期日，例如：收货 {number} {p.sku} <数量> <批次> <到期日>")
    if expiry is None:
        known = await session.scalar(select(Batch.expiry).where(Batch.product_id == p.id, Batch.code == batch))
        if known is None:
            raise DomainError("EXPIRY_REQUIRED", f"第 {i} 行：{p.name}（{p.sku}）的新批次 {batch} 缺少到期日",
                              f"请写到期日，例如：收货 {number} {p.sku} <数量> {batch} 2027-06-30")


async def receive(session: AsyncSession, settings: Settings, number: str, lines: list[ReceiptLine] | None, *,
                  by: str, now: datetime) -> Receipt:
    """Receive against a purchase order: the lines given (partial receipts allowed), or everything outstanding.
    The order's row is locked first (PostgreSQL FOR UPDATE; SQLite's write transaction holds the database), so two
    receipts of one order at once are counted one after the other and never over-receive. A line beyond what was
    ordered is refused unless within `[purchase] over_receipt_rate`. Posts a purchase receipt naming the order,
    from its supplier, at the order line's price, which books the payable = amount × (1 + tax rate)."""
    order = await the_order(session, number, lock=True)
    if order.status not in OPEN_ORDER_STATUSES:
        raise DomainError("ORDER_NOT_OPEN", f"采购单 {order.number} 当前状态为「{STATUS_ZH[order.status]}」，不能收货",
                          "发送「采购单」查看可以收货的采购单")
    view = (await order_views(session, [order]))[0]
    if not view.open:
        raise DomainError("ORDER_CLOSED", f"采购单 {order.number} 已全部收齐（已关闭），不能再收货",
                          "多到的货请退回供应商，或先发「采购申请」审批后再收；发送「采购单」查看未收齐的采购单")
    today = now.astimezone(settings.timezone).date()
    typed: list[tuple[OrderLine, Decimal, str, str, date | None]] = []
    if not lines:
        typed = [(ln, qty, unit, "", None) for ln, qty, unit in _outstanding_lines(view)]
    for i, given in enumerate(lines or [], start=1):
        ln = _on_order(view, given.product, i)
        qty, unit = parse_qty(given.qty, ln.product)
        expiry = parse_date(given.expiry, today) if given.expiry else None
        await _check_batch(session, order.number, ln, given.batch.strip(), expiry, i)
        typed.append((ln, qty, unit, given.batch.strip(), expiry))
    stock: list[Decimal] = []
    factors: list[int] = []
    for i, (ln, qty, unit, _batch, _expiry) in enumerate(typed, start=1):
        try:
            factor, in_stock = to_stock_qty(ln.product, unit, qty)
        except DomainError as e:
            raise DomainError(e.code, f"第 {i} 行：{e.message_zh}", e.fix_zh, {**e.fields, "line": i}) from None
        stock.append(in_stock)
        factors.append(factor)
        if stock[-1] > MAX_QTY:
            raise DomainError("QTY_TOO_BIG", f"第 {i} 行数量 {fq(qty)}{unit} 过大", "请核对数量和单位")
    _refuse_over_receipt(settings, view, typed, stock)
    warehouses = {w.id: w.code for w in await session.scalars(
        select(Warehouse).where(Warehouse.id.in_({ln.warehouse_id for ln, *_ in typed} | {order.warehouse_id})))}
    supplier = await session.get(Supplier, order.supplier_id) if order.supplier_id else None
    inputs = [LineInput(ln.product.sku, qty, unit, warehouse=warehouses[ln.warehouse_id], batch=batch, expiry=expiry,
                        unit_price=_price_for(ln.unit_price, ln.factor, factor), tax_rate=ln.tax_rate)
              for (ln, qty, unit, batch, expiry), factor in zip(typed, factors, strict=True)]
    doc = await create_document(session, settings, RECEIPT, inputs, warehouse=warehouses.get(order.warehouse_id),
                                supplier=supplier.code if supplier else None, ref_number=order.number, created_by=by,
                                note=f"采购单 {order.number} 到货", now=now)
    await submit_document(session, settings, doc, now)
    await post_document(session, settings, doc, now)
    payable = await session.scalar(select(func.coalesce(func.sum(FinanceEntry.amount), 0))
                                   .where(FinanceEntry.document_id == doc.id, FinanceEntry.kind == "payable"))
    amount = sum((q6(ln.qty * ln.unit_price) for ln in doc.lines), ZERO)
    after = (await order_views(session, [order]))[0]
    shown = [(ln, s, f"{fq(qty)}{unit}", batch, expiry) for (ln, qty, unit, batch, expiry), s in zip(typed, stock,
                                                                                                    strict=True)]
    return Receipt(doc, after, shown, amount, q6(Decimal(payable or 0)))


def _refuse_over_receipt(settings: Settings, view: OrderView, typed: list, stock: list[Decimal]) -> None:
    """Per product: received so far + this receipt ≤ ordered × (1 + over_receipt_rate)."""
    rate = settings.over_receipt_rate
    this: dict[int, Decimal] = {}
    for (ln, *_rest), s in zip(typed, stock, strict=True):
        this[ln.product.id] = this.get(ln.product.id, ZERO) + s
    for ln in view.lines:
        got = this.get(ln.product.id)
        if got is None:
            continue
        limit = q6(ln.ordered * (1 + rate))
        if ln.received + got <= limit:
            continue
        p, u = ln.product, ln.product.stock_unit
        allowed = f"（允许超收 {fq(rate * 100)}%，最多 {fq(limit)}{u}）" if rate else "（不允许超收）"
        room = max(limit - ln.received, ZERO)
        raise DomainError(
            "OVER_RECEIPT",
            f"超收：{p.name}（{p.sku}）采购单 {view.doc.number} 订购 {fq(ln.ordered)}{u}，已收 {fq(ln.received)}{u}，"
            f"本次 {fq(got)}{u}，合计 {fq(ln.received + got)}{u} 超过订购量{allowed}",
            f"请按实际到货收货，本单最多还能收 {fq(room)}{u}；多出的请退回供应商，或先发「采购申请」审批后再收；"
            "允许的超收比例由管理员在配置 [purchase] over_receipt_rate 中设置",
            {"sku": p.sku, "ordered": str(ln.ordered), "received": str(ln.received), "qty": str(got)},
        )

