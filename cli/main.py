"""The `jxcbot` command line: parse arguments, load the configuration, run one command, map errors to exit codes."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, ProgrammingError

from cli import render
from cli.jobs import cmd_job_run, cmd_jobs
from cli.ledger import cmd_diagnose, cmd_doc, cmd_stock
from cli.parser import EXIT_BAD_INPUT, build_parser, self_command
from cli.replenish import cmd_replenish
from cli.serve import cmd_serve
from cli.setup import cmd_demo, cmd_import, cmd_init, cmd_template
from cli.wecom import cmd_wecom
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
    handlers = {"init": cmd_init, "demo": cmd_demo, "template": cmd_template, "wecom": cmd_wecom}
    try:
        if args.command in handlers:
            return await handlers[args.command](settings, args)
        missing = await asyncio.to_thread(missing_sqlite_file, settings.database_url)
        if missing is not None:  # connecting would create an empty file
            print(f"错误：数据库尚未初始化（没有数据库文件 {missing}）。\n处理办法：先运行 {self_command()} init，"
                  "或检查配置 [database] url / 环境变量 JXCBOT_DATABASE_URL 是否指向已有的数据库", file=sys.stderr)
            return EXIT_BAD_INPUT
        db = Database(settings.database_url)
        try:
            commands = {"import": cmd_import, "stock": cmd_stock, "doc": cmd_doc, "diagnose": cmd_diagnose,
                        "serve": cmd_serve, "replenish": cmd_replenish, "jobs": cmd_jobs, "job": cmd_job_run}
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
            print(f"错误：数据库尚未初始化。\n处理办法：先运行 {self_command()} init", file=sys.stderr)
        else:
            print(f"错误：无法访问数据库（{type(e.orig).__name__}）。\n处理办法：检查配置 [database] url "
                  "或环境变量 JXCBOT_DATABASE_URL，确认数据库已启动", file=sys.stderr)
        return EXIT_BAD_INPUT


def missing_sqlite_file(url: str) -> Path | None:
    """The absolute path of an SQLite database file the URL names that does not exist (SQLite would create it on
    connecting), else None (another database, in memory, a URI filename, or the file is there)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None  # the connection reports it
    name = parsed.database
    if parsed.get_backend_name() != "sqlite" or not name or name == ":memory:" or name.startswith("file:"):
        return None
    path = Path(name)
    return None if path.exists() else path.absolute()


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point."""
    return asyncio.run(run(argv))


if __name__ == "__main__":  # python -m cli.main, for when the jxcbot script is not on PATH
    sys.exit(main())
