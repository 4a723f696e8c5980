"""Document types: number prefix, Chinese name, stock effect and every per-type rule the ledger asks about."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

IN = "in"  # adds on-hand stock
OUT = "out"  # removes on-hand stock (FEFO unless a batch is named)
SIGNED = "signed"  # line quantity carries its own sign
TRANSFER = "transfer"  # out of warehouse, into to_warehouse
LEND = "lend"  # on hand → on loan
LEND_BACK = "lend_back"  # on loan → on hand
COUNT_DIFF = "count_diff"  # counted − book
NONE = "none"  # no stock effect

# Validation modes ([validation] in the config overrides a type's default).
STRICT = "strict"  # a failed soft check blocks the posting
LOOSE = "loose"  # a failed soft check only flags the document for review

# What a line's quantity must be when the document is created.
POSITIVE = "positive"  # > 0 (to undo a document, cancel it)
NONZERO = "nonzero"  # signed, not 0 (adjustments, count differences)
COUNTED = "counted"  # the counted quantity is given instead (≥ 0)

# Hook names: behaviour beyond the stock effect, implemented by the module that registers the name
# (finance.HOOKS, counts.HOOKS, ordering.HOOKS) and run by core.ledger.documents at submit, post and cancel.
PAYABLE = "payable"  # posting books a payable per line
RECEIVABLE = "receivable"  # posting books a receivable per line
REFUND_RECEIVABLE = "refund_receivable"  # posting books a negative receivable per line
FULFILS_ORDER = "fulfils_order"  # posting fulfils the referenced reserving order; cancelling reopens it
MARKS_RETURNED = "marks_returned"  # posting marks the referenced document returned; cancelling re-derives it
RESERVES = "reserves"  # submitting reserves stock (strategic customers) until fulfilled or cancelled
BOOK_SNAPSHOT = "book_snapshot"  # submitting records each line's book quantity
COUNT_DISCREPANCY = "count_discrepancy"  # after submitting, a discrepancy document for differing lines
CLOSES_COUNT = "closes_count"  # posting a discrepancy closes (posts) the count it came from
ONE_OPEN_REQUEST = "one_open_request"  # submitting refuses a product that already has an open purchase request
PLACES_ORDER = "places_order"  # posting (the approval) places the purchase order for the request's supplier


@dataclass(frozen=True)
class ApprovalPolicy:
    """Who approves a submitted document: the roles, in parallel or in order, and who may not sign."""

    roles: tuple[str, ...]
    order: Literal["parallel", "sequential"] = "parallel"
    requester_may_sign: bool = False  # the person who submitted may approve it too
    distinct_people: bool = False  # each role's signature must come from a different person
    second_above: Decimal | None = None  # a document amount above this also needs second_roles, after the first
    second_roles: tuple[str, ...] = ("finance",)

    def roles_for(self, amount: Decimal) -> tuple[tuple[str, ...], bool]:
        """The roles a document of this amount needs and whether they sign in order: above `second_above` the
        second level (finance) signs after the first."""
        if self.second_above is None or amount <= self.second_above:
            return self.roles, self.order == "sequential"
        return self.roles + tuple(r for r in self.second_roles if r not in self.roles), True

    def __post_init__(self) -> None:
        if not self.roles or len(set(self.roles)) != len(self.roles):
            raise ValueError(f"approval roles must be non-empty and distinct: {self.roles!r}")
        if self.order not in ("parallel", "sequential"):
            raise ValueError(f"approval order must be parallel or sequential: {self.order!r}")


MANAGER = ApprovalPolicy(("manager",))
# The counting warehouse keeper may be the warehouse party of the three (the seed's 三方签字).
COUNT_SIGN_OFF = ApprovalPolicy(("warehouse", "purchasing", "sales"), "parallel", requester_may_sign=True,
                                distinct_people=True)


@dataclass(frozen=True)
class DocType:
    """What a document type is called, how it is numbered, how it moves stock and which rules apply to it."""

    code: str
    prefix: str
    name_zh: str
    effect: str
    locks: bool = False  # submitted but unapproved: locks its product+warehouse for other postings
    unposted_blocks: bool = False  # draft or submitted: blocks postings on its product+warehouse (opening stock)
    validation: str = STRICT  # default mode; [validation] in the config overrides it
    approval: ApprovalPolicy | None = None  # None: no approval step
    line_qty: str = POSITIVE
    batch_required: bool = False  # a batch-tracked product needs a batch code on the line
    no_past_expiry: bool = False  # a line's expiry date may not be in the past
    issues_expired: bool = False  # may move expired batches (the way expired goods leave)
    requires_ref: str | None = None  # must reference a posted document of this type
    hooks: tuple[str, ...] = ()  # hook names, run in this order
    signed: bool = False  # goes to approval only with the customer's signature photo (a borrow slip)

    def validation_mode(self, overrides: Mapping[str, str]) -> str:
        """The configured mode for this type ([validation] section), else the type's default."""
        return overrides.get(self.code, self.validation)


DOC_TYPES: dict[str, DocType] = {
    t.code: t
    for t in (
        DocType("opening", "QC", "期初库存", IN, unposted_blocks=True, approval=MANAGER, batch_required=True,
                no_past_expiry=True),
        DocType("purchase_receipt", "RK", "采购入库", IN, batch_required=True, no_past_expiry=True, hooks=(PAYABLE,)),
        DocType("sales_issue", "CK", "销售出库", OUT, hooks=(RECEIVABLE, FULFILS_ORDER)),
        DocType("sales_return", "XT", "销售退货", IN, batch_required=True, requires_ref="sales_issue",
                hooks=(REFUND_RECEIVABLE, MARKS_RETURNED)),
        DocType("transfer", "DB", "调拨", TRANSFER, locks=True, approval=MANAGER),
        DocType("loss", "BS", "报损", OUT, locks=True, approval=MANAGER, issues_expired=True),
        DocType("adjustment", "TZ", "手工调整", SIGNED, locks=True, approval=MANAGER, line_qty=NONZERO),
        DocType("other_issue", "QT", "其他出库", OUT),
        DocType("borrow", "JH", "借条", LEND, approval=MANAGER, signed=True),
        DocType("borrow_return", "GH", "借货归还", LEND_BACK),
        DocType("stock_count", "PD", "盘点", NONE, line_qty=COUNTED, hooks=(BOOK_SNAPSHOT, COUNT_DISCREPANCY)),
        DocType("discrepancy", "CY", "盘点差异", COUNT_DIFF, approval=COUNT_SIGN_OFF, line_qty=NONZERO,
                hooks=(CLOSES_COUNT,)),
        DocType("purchase_request", "SQ", "采购申请", NONE, approval=MANAGER,
                hooks=(ONE_OPEN_REQUEST, PLACES_ORDER)),
        DocType("purchase_order", "CG", "采购订单", NONE),
        DocType("sales_order", "XS", "销售订单", NONE, hooks=(RESERVES,)),
    )
}

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


def codes_where(rule: str) -> tuple[str, ...]:
    """Codes of the types whose boolean rule `rule` (a DocType field such as "locks") is set, in table order."""
    return tuple(t.code for t in DOC_TYPES.values() if getattr(t, rule))


def codes_with_hook(name: str) -> tuple[str, ...]:
    """Codes of the types that list hook `name`, in table order."""
    return tuple(t.code for t in DOC_TYPES.values() if name in t.hooks)
