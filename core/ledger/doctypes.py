"""Document types: number prefix, Chinese name and stock effect."""

from __future__ import annotations

from dataclasses import dataclass

IN = "in"  # adds on-hand stock
OUT = "out"  # removes on-hand stock (FEFO unless a batch is named)
SIGNED = "signed"  # line quantity carries its own sign
TRANSFER = "transfer"  # out of warehouse, into to_warehouse
LEND = "lend"  # on hand → on loan
LEND_BACK = "lend_back"  # on loan → on hand
COUNT_DIFF = "count_diff"  # counted − book
NONE = "none"  # no stock effect


@dataclass(frozen=True)
class DocType:
    """What a document type is called, how it is numbered and how it moves stock."""

    code: str
    prefix: str
    name_zh: str
    effect: str


DOC_TYPES: dict[str, DocType] = {
    t.code: t
    for t in (
        DocType("opening", "QC", "期初库存", IN),
        DocType("purchase_receipt", "RK", "采购入库", IN),
        DocType("sales_issue", "CK", "销售出库", OUT),
        DocType("sales_return", "XT", "销售退货", IN),
        DocType("transfer", "DB", "调拨", TRANSFER),
        DocType("loss", "BS", "报损", OUT),
        DocType("adjustment", "TZ", "手工调整", SIGNED),
        DocType("other_issue", "QT", "其他出库", OUT),
        DocType("borrow", "JH", "借条", LEND),
        DocType("borrow_return", "GH", "借货归还", LEND_BACK),
        DocType("stock_count", "PD", "盘点", NONE),
        DocType("discrepancy", "CY", "盘点差异", COUNT_DIFF),
        DocType("purchase_request", "SQ", "采购申请", NONE),
        DocType("purchase_order", "CG", "采购订单", NONE),
        DocType("sales_order", "XS", "销售订单", NONE),
    )
}

# Submitted but unapproved documents of these types lock their product+warehouse.
LOCKING_TYPES = frozenset({"transfer", "loss", "adjustment"})

STATUS_ZH = {
    "draft": "草稿",
    "submitted": "待审核",
    "posted": "已过账",
    "cancelled": "已作废",
    "rejected": "已驳回",
}

DISCREPANCY_TYPES = ("自然损耗", "客户借货未还", "系统漏单", "损坏", "其他")


def doc_type(code: str) -> DocType:
    """The DocType for a code; KeyError names the unknown code."""
    return DOC_TYPES[code]
