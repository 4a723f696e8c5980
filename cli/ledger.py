"""Ledger commands: stock, doc, diagnose — the same core functions the chat commands call."""

from __future__ import annotations

import argparse

from cli import render
from cli.parser import EXIT_BAD_INPUT, EXIT_OK, parse_at
from core.config import Settings
from core.errors import DomainError
from core.ledger.diagnose import diagnose_document, diagnose_pair
from core.ledger.doctypes import DOC_TYPES, STATUS_ZH
from core.ledger.document_view import document_view
from core.ledger.lookup import ask_stock
from core.storage import Database
from core.types import fq


async def cmd_stock(settings: Settings, args: argparse.Namespace, db: Database) -> int:
    """Stock of matching products per warehouse and batch (the chat command 库存 asks the same function)."""
    at = parse_at(args.at, settings) if args.at else None
    answer = await ask_stock(db, args.query, args.warehouse, at)
    title = f"库存查询「{answer.query}」" + (f" 截至 {at:%Y-%m-%d %H:%M}" if at else "")
    print(render.stock_report(answer.levels, title))
    return EXIT_OK


async def cmd_doc(settings: Settings, args: argparse.Namespace, db: Database) -> int:
    """Show one document with its lines."""
    async with db.read() as s:
        view = await document_view(s, args.number)
    doc, tz = view.doc, settings.timezone
    print(f"{doc.number}  {DOC_TYPES[doc.type].name_zh}  状态：{STATUS_ZH[doc.status]}"
          + ("  已退货" if doc.returned else "") + ("  ⚠ 待复核" if doc.needs_review else ""))
    print(f"创建 {doc.created_at.astimezone(tz):%Y-%m-%d %H:%M}"
          + (f"  过账 {doc.posted_at.astimezone(tz):%Y-%m-%d %H:%M}" if doc.posted_at else ""))
    rows = [[str(ln.line_no), ln.sku, ln.name, ln.warehouse, ln.batch or "—", f"{fq(ln.qty)}{ln.unit}",
             f"{fq(ln.stock_qty)}{ln.stock_unit}"] for ln in view.lines]
    print(render.table(["行", "SKU", "名称", "仓库", "批次", "数量", "折合库存单位"], rows))
    if doc.review_notes:
        print("复核说明：\n" + doc.review_notes)
    if doc.reject_reason:
        print(f"驳回原因：{doc.reject_reason}")
    return EXIT_OK


async def cmd_diagnose(settings: Settings, args: argparse.Namespace, db: Database) -> int:
    """Diagnose a document (dry run, rolled back) or a product+warehouse."""
    if len(args.target) == 1:
        async with db.session() as s:  # the dry run locks like a posting; nothing is written
            diag = await diagnose_document(s, settings, args.target[0])
            await s.rollback()
        print(render.document_diagnosis(diag))
        return EXIT_OK if not diag.failures else EXIT_BAD_INPUT
    if len(args.target) == 2:
        async with db.read() as s:
            print(render.pair_diagnosis(await diagnose_pair(s, *args.target), settings.timezone))
        return EXIT_OK
    raise DomainError("BAD_ARGS", "诊断需要一个单据号，或 SKU 和仓库两项", "例如：jxcbot diagnose RK20261125001 或 "
                      "jxcbot diagnose CREAM CW")
