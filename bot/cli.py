"""The `jxcbot` command line: init, demo, serve, template, import, stock, doc, diagnose."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from sqlalchemy.exc import OperationalError, ProgrammingError

from bot import render
from core.config import ConfigError, Settings, load_config
from core.db import Database
from core.doctypes import DOC_TYPES, STATUS_ZH
from core.errors import DomainError
from core.types import fq

EXIT_OK, EXIT_BAD_INPUT = 0, 2
KINDS = ("products", "warehouses", "users", "opening")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (help texts in Chinese)."""
    p = argparse.ArgumentParser(prog="jxcbot", description="jxcbot 进销存机器人：账本命令行")
    p.add_argument("--config", metavar="FILE", help="配置文件（默认 ./jxcbot.toml，不存在则用内置默认值）")
    sub = p.add_subparsers(dest="command", required=True, metavar="命令")
    sub.add_parser("init", help="创建或升级数据库结构")
    demo = sub.add_parser("demo", help="用内置演示数据（烘焙连锁）新建演示库，打印库存概览并启动本地控制台")
    demo.add_argument("--db", default="jxcbot-demo.db", help="演示库 SQLite 文件（每次重建），默认 jxcbot-demo.db")
    demo.add_argument("--no-serve", action="store_true", help="只建演示库并打印概览，不启动服务")
    sub.add_parser("serve", help="启动机器人服务：企业微信/钉钉回调、本地控制台 /console、健康检查 /healthz")
    t = sub.add_parser("template", help="生成导入模板（.xlsx 或 .csv）")
    t.add_argument("kind", choices=KINDS)
    t.add_argument("out", type=Path)
    i = sub.add_parser("import", help="导入 Excel/CSV（整文件全部成功才写入）")
    i.add_argument("kind", choices=KINDS)
    i.add_argument("file", type=Path)
    i.add_argument("--submit-only", action="store_true", help="期初只提交待审核，不直接过账")
    s = sub.add_parser("stock", help="查库存：SKU、条码或名称片段")
    s.add_argument("query")
    s.add_argument("--warehouse", "-w")
    s.add_argument("--at", help="历史时点，如 2026-11-01 或 '2026-11-01 18:00'（按配置时区）")
    d = sub.add_parser("doc", help="查看单据")
    d.add_argument("number")
    g = sub.add_parser("diagnose", help="诊断：单据号，或 SKU + 仓库")
    g.add_argument("target", nargs="+", metavar="NUMBER | SKU WAREHOUSE")
    return p


def parse_at(text: str, settings: Settings) -> datetime:
    """A datetime from the command line; naive values are in the configured timezone."""
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise DomainError("BAD_DATETIME", f"时间「{text}」无法识别", "请写成 2026-11-01 或 2026-11-01 18:00") from None
    return at.replace(tzinfo=settings.timezone) if at.tzinfo is None else at


def _make_parent(path: str) -> None:
    Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)


async def _init(settings: Settings, url: str | None = None) -> None:
    from core.migrate import upgrade

    url = url or settings.database_url
    if url.startswith("sqlite") and ":///" in url:
        await asyncio.to_thread(_make_parent, url.split(":///", 1)[1])
    await upgrade(url)


async def cmd_init(settings: Settings, _args: argparse.Namespace) -> int:
    """Create or upgrade the schema."""
    await _init(settings)
    print("数据库已就绪（已升级到最新结构）。")
    return EXIT_OK


def _fresh_file(path: Path) -> Path:
    """Remove an SQLite file with its WAL companions; returns the absolute path."""
    path = path.resolve()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


async def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    """Build a fresh demo database and print the stock overview."""
    from dataclasses import replace

    from core.importer import load_demo
    from core.overview import stock_overview

    path = await asyncio.to_thread(_fresh_file, Path(args.db))
    url = f"sqlite+aiosqlite:///{path}"
    demo_settings = replace(settings, database_url=url)
    await _init(demo_settings)
    db = Database(url)
    try:
        print("正在载入演示数据（烘焙连锁：中央仓 + 12 家门店）…", file=sys.stderr)
        await db.write(lambda s: load_demo(s, demo_settings))
        async with db.read() as s:
            print(render.overview(await stock_overview(s)))
    finally:
        await db.dispose()
    print(f"\n演示库：{path}\n试试查询：JXCBOT_DATABASE_URL={url} jxcbot stock 奶油")
    if args.no_serve:
        return EXIT_OK
    return await serve(demo_settings, Database(url))


async def cmd_serve(settings: Settings, _args: argparse.Namespace, db: Database) -> int:
    """Run the bot server until Ctrl-C / SIGTERM."""
    return await serve(settings, db)


async def serve(settings: Settings, db: Database) -> int:
    """Start the aiohttp server, print the console URL, stop gracefully on SIGINT/SIGTERM."""
    import signal

    from aiohttp import web

    from bot.server import build_app

    runner = web.AppRunner(build_app(settings, db), handle_signals=False)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, settings.server_host, settings.server_port).start()
        except OSError as e:
            raise DomainError("PORT_BUSY", f"无法监听 {settings.server_host}:{settings.server_port}（{e.strerror}）",
                              "端口可能已被占用：换一个端口（[server] port 或 JXCBOT_SERVER_PORT）后重试") from None
        print(f"jxcbot 已启动。本地控制台：http://{settings.server_host}:{settings.server_port}/console"
              "（按 Ctrl-C 停止）", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        print("正在停止：等待处理中的消息完成…", file=sys.stderr)
    finally:
        await runner.cleanup()
        await db.dispose()
    return EXIT_OK


async def cmd_template(_settings: Settings, args: argparse.Namespace) -> int:
    """Write an import template."""
    from core.importer import write_template

    await asyncio.to_thread(write_template, args.kind, args.out)
    print(f"已生成导入模板：{args.out}")
    return EXIT_OK


async def cmd_import(settings: Settings, args: argparse.Namespace, db: Database) -> int:
    """Import a file all-or-nothing, printing progress and every bad row."""
    from core.importer import ImportFailed, import_file

    if not args.file.exists():
        raise DomainError("NO_FILE", f"找不到文件 {args.file}", "请检查路径和文件名")

    def progress(done: int, total: int) -> None:
        print(f"\r处理中 {done}/{total} 行", end="", file=sys.stderr, flush=True)

    try:
        report = await db.write(
            lambda s: import_file(s, settings, args.kind, args.file, post=not args.submit_only, progress=progress)
        )
    except ImportFailed as e:
        print(file=sys.stderr)
        print(f"导入失败：{len(e.errors)} 处错误，未写入任何数据。请修改后重新导入整个文件。")
        for err in e.errors:
            print(f"  第 {err.row} 行 [{err.column}]：{err.message_zh} → {err.fix_zh}")
        return EXIT_BAD_INPUT
    print(file=sys.stderr)
    msg = f"导入完成：{report.rows} 行，新增 {report.created}，更新 {report.updated}。"
    if report.documents:
        msg += f" 期初单：{'、'.join(report.documents)}"
    print(msg)
    return EXIT_OK


async def cmd_stock(settings: Settings, args: argparse.Namespace, db: Database) -> int:
    """Stock of matching products per warehouse and batch."""
    from core.stock import stock_lookup

    at = parse_at(args.at, settings) if args.at else None
    async with db.read(snapshot=at is not None) as s:  # current stock is one statement
        products, levels = await stock_lookup(s, args.query, args.warehouse, at)
    if not products:
        raise DomainError("NO_MATCH", f"没有找到与「{args.query}」匹配的商品", "请换个关键词，或用 SKU/条码查询")
    title = f"库存查询「{args.query}」" + (f" 截至 {at:%Y-%m-%d %H:%M}" if at else "")
    print(render.stock_report(levels, title))
    return EXIT_OK


async def cmd_doc(settings: Settings, args: argparse.Namespace, db: Database) -> int:
    """Show one document with its lines."""
    from sqlalchemy import select

    from core.documents import get_document
    from core.models import Product, Warehouse

    async with db.read() as s:
        doc = await get_document(s, args.number)
        pids = {ln.product_id for ln in doc.lines}
        products = {p.id: p for p in await s.scalars(select(Product).where(Product.id.in_(pids)))}
        whs = {w.id: w.code for w in await s.scalars(select(Warehouse))}
    tz = settings.timezone
    print(f"{doc.number}  {DOC_TYPES[doc.type].name_zh}  状态：{STATUS_ZH[doc.status]}"
          + ("  已退货" if doc.returned else "") + ("  ⚠ 待复核" if doc.needs_review else ""))
    print(f"创建 {doc.created_at.astimezone(tz):%Y-%m-%d %H:%M}"
          + (f"  过账 {doc.posted_at.astimezone(tz):%Y-%m-%d %H:%M}" if doc.posted_at else ""))
    rows = [[str(ln.line_no), products[ln.product_id].sku, products[ln.product_id].name, whs[ln.warehouse_id],
             ln.batch_code or "—", f"{fq(ln.qty)}{ln.unit}", f"{fq(ln.stock_qty)}{products[ln.product_id].stock_unit}"]
            for ln in doc.lines]
    print(render.table(["行", "SKU", "名称", "仓库", "批次", "数量", "折合库存单位"], rows))
    if doc.review_notes:
        print("复核说明：\n" + doc.review_notes)
    if doc.reject_reason:
        print(f"驳回原因：{doc.reject_reason}")
    return EXIT_OK


async def cmd_diagnose(settings: Settings, args: argparse.Namespace, db: Database) -> int:
    """Diagnose a document (dry run, rolled back) or a product+warehouse."""
    from core.diagnose import diagnose_document, diagnose_pair

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


async def run(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run one command; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_config(args.config)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return EXIT_BAD_INPUT
    handlers = {"init": cmd_init, "demo": cmd_demo, "template": cmd_template}
    try:
        if args.command in handlers:
            return await handlers[args.command](settings, args)
        db = Database(settings.database_url)
        try:
            commands = {"import": cmd_import, "stock": cmd_stock, "doc": cmd_doc, "diagnose": cmd_diagnose,
                        "serve": cmd_serve}
            return await commands[args.command](settings, args, db)
        finally:
            await db.dispose()
    except DomainError as e:
        print(render.error_text(e), file=sys.stderr)
        return EXIT_BAD_INPUT
    except ConfigError as e:  # a [wecom]/[dingtalk]/[outbox] section read when the server starts
        print(str(e), file=sys.stderr)
        return EXIT_BAD_INPUT
    except (OperationalError, ProgrammingError) as e:
        if "no such table" in str(e) or "does not exist" in str(e):
            print("错误：数据库尚未初始化。\n处理办法：先运行 jxcbot init", file=sys.stderr)
        else:
            print(f"错误：无法访问数据库（{type(e.orig).__name__}）。\n处理办法：检查配置 [database] url "
                  "或环境变量 JXCBOT_DATABASE_URL，确认数据库已启动", file=sys.stderr)
        return EXIT_BAD_INPUT


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point."""
    return asyncio.run(run(argv))
