"""User import: validate rows (names, roles, WeCom/DingTalk ids) and write them."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.importer.lookup import _fetch_by, _fetch_in
from core.importer.parsing import _Bad, _nfkc
from core.importer.progress import Progress, _tick
from core.importer.reading import _Table
from core.importer.results import RowError
from core.importer.rowcheck import _Cells, _duplicates, _final_owner_conflict
from core.importer.writing import _write_simple
from core.models import ROLE_ZH, ROLES, User

_ROLE_ALIASES = {**{r: r for r in ROLES}, **{zh: r for r, zh in ROLE_ZH.items()}, "经理": "manager"}
_ROLES_HELP = "、".join(f"{r}（{zh}）" for r, zh in ROLE_ZH.items())


def _roles(text: str) -> str:
    parts = [p for p in re.split(r"[,，、;；/\s]+", _nfkc(text)) if p]
    roles: set[str] = set()
    for p in parts:
        role = _ROLE_ALIASES.get(p.lower()) or _ROLE_ALIASES.get(p)
        if role is None:
            raise _Bad(f"中有未知角色「{p}」", f"可用角色：{_ROLES_HELP}，多个角色用逗号分隔")
        roles.add(role)
    if not roles:
        raise _Bad("为空", f"请至少填写一个角色：{_ROLES_HELP}")
    return ",".join(r for r in ROLES if r in roles)


async def _check_users(session: AsyncSession, table: _Table, errors: list[RowError],
                       progress: Progress) -> list[tuple[User | None, dict[str, Any]]]:
    rows = table.rows
    names = [(r, r.values.get("name", "")) for r in rows]
    _duplicates(names, "name", "姓名", errors, "每个姓名只能出现一次；同名的人请加以区分，如 王芳(仓储)")
    existing = await _fetch_by(session, User, "name", (v for _, v in names))
    id_cols = {"wecom_user_id": ("企业微信ID", User.wecom_user_id),
               "dingtalk_staff_id": ("钉钉ID", User.dingtalk_staff_id)}
    holders: dict[str, dict[str, User]] = {}
    file_ids: dict[str, dict[str, str | None]] = {}
    for key, (zh, attr) in id_cols.items():
        if key not in table.columns:
            continue
        _duplicates(((r, r.values[key]) for r in rows), key, zh, errors, f"每个{zh}只能属于一个人，请核对")
        file_ids[key] = {r.values.get("name", ""): (r.values[key] or None) for r in rows}
        holders[key] = {getattr(u, key): u for u in await _fetch_in(
            session, lambda c, attr=attr: select(User).where(attr.in_(c)), file_ids[key].values())}
    plan: list[tuple[User | None, dict[str, Any]]] = []
    for n, row in enumerate(rows, start=1):
        c = _Cells("users", row, errors)
        before = len(errors)
        name = c.text("name") or ""
        current = existing.get(name)
        attrs: dict[str, Any] = {"name": name}
        roles = c.parse("roles", _roles)
        if isinstance(roles, str):
            attrs["roles"] = roles
        department = c.text("department")
        if department is not None:
            attrs["department"] = department
        for key, (zh, _attr) in id_cols.items():
            value = c.text(key)
            if value is None:
                continue
            attrs[key] = value or None
            holder = holders[key].get(value) if value else None
            if holder is not None and _final_owner_conflict(holder.name, name, value, file_ids[key]):
                c.error(key, f"{zh}「{value}」已属于用户「{holder.name}」",
                        f"每个{zh}只能属于一个人：请核对，或在本文件中同时修改「{holder.name}」的{zh}")
        if len(errors) == before:
            plan.append((current, attrs))
        _tick(progress, n, len(rows))
    return plan


async def _write_users(session: AsyncSession, plan: list[tuple[User | None, dict[str, Any]]]) -> tuple[int, int]:
    moving = False
    for u, a in plan:
        for k in ("wecom_user_id", "dingtalk_staff_id"):
            if u is not None and k in a and getattr(u, k) and a[k] != getattr(u, k):
                setattr(u, k, None)  # free the id first so a swap does not trip the unique index
                moving = True
    if moving:
        await session.flush()
    return await _write_simple(session, User, plan)
