"""What a posting plans: the moves, the locked balances and the masters the checks read."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from core.models import Document, DocumentLine, Product, Warehouse

Key = tuple[int, int, int]  # (product_id, warehouse_id, batch_id)


@dataclass
class Move:
    """A planned movement; batch_id None means 'pick by FEFO' for a negative quantity."""

    line: DocumentLine | None
    product_id: int
    warehouse_id: int
    batch_id: int | None
    bucket: str
    qty: Decimal
    reversal_of_id: int | None = None


@dataclass(slots=True)
class Bal:
    """A locked balance row as plain values (the posting path updates it with one executemany)."""

    id: int
    product_id: int
    warehouse_id: int
    batch_id: int
    qty: Decimal
    on_loan: Decimal
    max_move: Decimal
    move_count: int
    updated_at: datetime
    unordered: bool = False


@dataclass
class Plan:
    """Everything the checks need: the document, its moves and the locked balances before/after."""

    doc: Document
    moves: list[Move]
    products: dict[int, Product]
    warehouses: dict[int, Warehouse]
    balances: dict[Key, Bal] = field(default_factory=dict)
    expiry: dict[int, date | None] = field(default_factory=dict)
    today: date | None = None
    now: datetime | None = None
    reversal: bool = False
    unbatched: dict[int, int] = field(default_factory=dict)

    def pairs(self) -> list[tuple[int, int]]:
        """Sorted (product_id, warehouse_id) pairs touched."""
        return sorted({(m.product_id, m.warehouse_id) for m in self.moves})
