"""The `jxcbot` command line: parse arguments, load the configuration, run one command, map errors to exit codes."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from sqlalchemy.exc import OperationalError, ProgrammingError

from cli import render
from cli.ledger import cmd_diagnose, cmd_doc, cmd_stock
from cli.parser import EXIT_BAD_INPUT, build_parser
from cli.replenish import cmd_replenish
from cli.serve import cmd_serve
from cli.setup import cmd_demo, cmd_import, cmd_init, cmd_template
from core.config import ConfigError, load_config
from core.errors import DomainError
from core.storage import Database


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
                        "serve": cmd_serve, "replenish": cmd_replenish}
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
