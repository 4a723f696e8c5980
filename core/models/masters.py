"""Master data: products, batches, warehouses, customers, suppliers, users."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import Decimal

from sqlalchemy import Boolean, Date, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base
from core.types import Dec

# What a warehouse is: a central warehouse, a store, or anything else (the seed's 中央仓 不可直发门店 rule).
WAREHOUSE_KINDS = {"central": "中央仓", "store": "门店", "other": "其他"}
ROLES = ("warehouse", "purchasing", "sales", "finance", "manager", "admin")
ROLE_ZH = {"warehouse": "库管", "purchasing": "采购", "sales": "销售", "finance": "财务", "manager": "主管",
           "admin": "管理员"}


def parse_roles(text: str | None) -> frozenset[str]:
    """The role codes of a user's comma-separated `roles` column."""
    return frozenset(r.strip() for r in (text or "").split(",") if r.strip())


def roles_zh(roles: Iterable[str]) -> str:
    """Role codes as the Chinese names users know them by, e.g. "主管、管理员" (unknown codes as they are)."""
    ordered = sorted(roles, key=lambda r: (ROLES.index(r) if r in ROLES else len(ROLES), r))
    return "、".join(ROLE_ZH.get(r, r) for r in ordered)


class Product(Base):
    """A stock-keeping unit with its stock unit and one purchase unit (whole-number factor)."""

    __tablename__ = "products"

    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    barcode: Mapped[str | None] = mapped_column(String(64), unique=True)
    category: Mapped[str] = mapped_column(String(64), default="")
    stock_unit: Mapped[str] = mapped_column(String(16))
    purchase_unit: Mapped[str] = mapped_column(String(16))
    purchase_factor: Mapped[int] = mapped_column(Integer, default=1)
    shelf_life_days: Mapped[int | None] = mapped_column(Integer)
    batch_tracked: Mapped[bool] = mapped_column(Boolean, default=False)
    lead_time_days: Mapped[int] = mapped_column(Integer, default=0)
    buffer_days: Mapped[int] = mapped_column(Integer, default=0)
    moq: Mapped[Decimal] = mapped_column(Dec, default=Decimal(0))
    pack_size: Mapped[Decimal] = mapped_column(Dec, default=Decimal(1))
    auto_replenish: Mapped[bool] = mapped_column(Boolean, default=False)
    purchaser_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class Batch(Base):
    """A batch of one product; code '' is the product's unbatched stock."""

    __tablename__ = "batches"
    __table_args__ = (UniqueConstraint("product_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    code: Mapped[str] = mapped_column(String(64), default="")
    expiry: Mapped[date | None] = mapped_column(Date)


class Warehouse(Base):
    """A warehouse or store with its negative-stock switch and floor."""

    __tablename__ = "warehouses"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    allow_negative: Mapped[bool] = mapped_column(Boolean, default=False)
    negative_floor: Mapped[Decimal] = mapped_column(Dec, default=Decimal(0))
    ships_to_stores: Mapped[bool] = mapped_column(Boolean, default=True)
    kind: Mapped[str] = mapped_column(String(16), default="other")  # central | store | other (WAREHOUSE_KINDS)


class Customer(Base):
    """A customer; strategic customers' open orders reserve stock."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    strategic: Mapped[bool] = mapped_column(Boolean, default=False)


class Supplier(Base):
    """A supplier."""

    __tablename__ = "suppliers"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))


class User(Base):
    """A person with platform ids, department and comma-separated roles."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    wecom_user_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    dingtalk_staff_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    department: Mapped[str] = mapped_column(String(64), default="")
    roles: Mapped[str] = mapped_column(String(128), default="")

    def has_role(self, role: str) -> bool:
        """True if the user holds the role."""
        return role in parse_roles(self.roles)
