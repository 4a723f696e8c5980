"""Warehouse import: validate rows (codes, negative-stock settings); written by the shared upsert writer."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.importer.lookup import _fetch_by
from core.importer.parsing import _Bad, _bool, _decimal
from core.importer.progress import Progress, _tick
from core.importer.reading import _Table
from core.importer.results import RowError
from core.importer.rowcheck import _Cells, _duplicates
from core.models import Warehouse
from core.models.masters import WAREHOUSE_KINDS


def _kind(text: str) -> str:
    t = text.strip().lower()
    for code, zh in WAREHOUSE_KINDS.items():
        if t in (code, zh, zh.rstrip("仓")):
            return code
    raise _Bad(f"「{text}」不是有效的仓库类型", "请填写 中央仓、门店 或 其他（也可用 central / store / other）")


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
    existing = await _fetch_by(session, Warehouse, "code", (v for _, v in codes))
    plan: list[tuple[Warehouse | None, dict[str, Any]]] = []
    for n, row in enumerate(rows, start=1):
        c = _Cells("warehouses", row, errors)
        before = len(errors)
        code, name = c.text("code") or "", c.text("name") or ""
        current = existing.get(code)
        attrs: dict[str, Any] = {"code": code, "name": name}
        c.fill(attrs, (("allow_negative", _bool, False), ("negative_floor", _floor, Decimal(0)),
                       ("ships_to_stores", _bool, True), ("kind", _kind, "other")), is_new=current is None)
        allow = attrs.get("allow_negative", current.allow_negative if current else False)
        floor = attrs.get("negative_floor", current.negative_floor if current else Decimal(0))
        if allow is False and isinstance(floor, Decimal) and floor < 0:
            c.error("negative_floor", f"未允许负库存，但填写了负库存下限 {floor}",
                    "如需允许负库存，请把「允许负库存」填为 是；否则把下限填 0 或留空")
        if len(errors) == before:
            plan.append((current, attrs))
        _tick(progress, n, len(rows))
    return plan
