"""Setting up: init (migrations), demo (the bundled bakery chain), import templates and all-or-nothing imports."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from dataclasses import replace
from pathlib import Path

from cli import render
from cli.parser import EXIT_BAD_INPUT, EXIT_OK, self_command
from cli.serve import serve
from core.config import Settings
from core.errors import DomainError
from core.importer import ImportFailed, import_file, load_demo, write_template
from core.ledger.overview import stock_overview
from core.storage import Database
from core.storage.migrate import upgrade


def _make_parent(path: str) -> None:
    Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)


async def _init(settings: Settings, url: str | None = None) -> None:
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
    path = await asyncio.to_thread(_fresh_file, Path(args.db))
    url = f"sqlite+aiosqlite:///{path}"
    demo_settings = replace(settings, database_url=url, server_console=True)  # the demo is tried in the console
    await _init(demo_settings)
    db = Database(url)
    try:
        print("正在载入演示数据（烘焙连锁：中央仓 + 12 家门店）…", file=sys.stderr)
        await db.write(lambda s: load_demo(s, demo_settings))
        async with db.read() as s:
            print(render.overview(await stock_overview(s)))
    finally:
        await db.dispose()
    print("\n等待签核：一张盘点差异单（库管、采购、销售三方会签）和一张报损单（主管审批）。在控制台选「李采购」或"
          "「陈经理」，发送「待办」，点「同意」即可签核；发送「帮助」看全部命令。")
    if not args.no_serve:
        print("演示库含一年的每日单据；服务启动时各定时任务按最近周期运行一次：控制台「群消息」面板里有高风险商品日报、"
              "月度健康度诊断和命中率看板，「李采购」收到带 30 天趋势图的采购预警。")
    print(f"演示库：{path}\n试试查询：JXCBOT_DATABASE_URL={shlex.quote(url)} {self_command()} stock 奶油")
    if args.no_serve:
        return EXIT_OK
    return await serve(demo_settings, Database(url))


async def cmd_template(_settings: Settings, args: argparse.Namespace) -> int:
    """Write an import template."""
    await asyncio.to_thread(write_template, args.kind, args.out)
    print(f"已生成导入模板：{args.out}")
    return EXIT_OK


async def cmd_import(settings: Settings, args: argparse.Namespace, db: Database) -> int:
    """Import a file all-or-nothing, printing progress and every bad row."""
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
