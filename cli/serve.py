"""jxcbot serve: the bot server until Ctrl-C / SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from aiohttp import web

from bot.server import build_app
from cli.parser import EXIT_OK
from core.config import Settings
from core.errors import DomainError
from core.storage import Database


async def cmd_serve(settings: Settings, _args: argparse.Namespace, db: Database) -> int:
    """Run the bot server until Ctrl-C / SIGTERM."""
    return await serve(settings, db)


async def serve(settings: Settings, db: Database) -> int:
    """Start the aiohttp server, print the console URL, stop gracefully on SIGINT/SIGTERM."""
    runner = web.AppRunner(build_app(settings, db, jobs=True), handle_signals=False)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, settings.server_host, settings.server_port,
                              reuse_port=settings.server_reuse_port or None).start()
        except OSError as e:
            raise DomainError("PORT_BUSY", f"无法监听 {settings.server_host}:{settings.server_port}（{e.strerror}）",
                              "端口可能已被占用：换一个端口（[server] port 或 JXCBOT_SERVER_PORT）后重试") from None
        where = f"http://{settings.server_host}:{settings.server_port}"
        if settings.console_enabled:
            print(f"jxcbot 已启动。本地控制台：{where}/console（按 Ctrl-C 停止）", flush=True)
        else:
            why = ("已按配置关闭（[server] console = false）" if settings.server_console is False else
                   "默认关闭：已配置企业微信/钉钉，而控制台不验证身份，能访问本端口的人都能冒用用户身份；"
                   "仅在可信网络中需要时设置 [server] console = true")
            print(f"jxcbot 已启动，监听 {where}（按 Ctrl-C 停止）。本地控制台{why}。", flush=True)
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
