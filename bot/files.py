"""GET /files/<token>: a report's attached file (the risk report's .xlsx) for platforms that cannot take files."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from urllib.parse import quote

from aiohttp import web

from core.reports.files import read_file
from core.storage import Database


def routes(db: Database, clock: Callable[[], datetime]) -> list[web.RouteDef]:
    """The download route; the token (256 random bits) is the only credential, valid core.reports.files.KEEP_DAYS."""

    async def download(request: web.Request) -> web.Response:
        async with db.read(snapshot=False) as s:
            found = await read_file(s, request.match_info["token"], clock())
        if found is None:
            raise web.HTTPNotFound(text="文件不存在或链接已过期（报表附件保留 90 天）；请在下一期报表中查看")
        return web.Response(body=found.data, content_type=found.content_type, headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(found.filename)}",
            "Cache-Control": "private, no-store"})

    return [web.get("/files/{token}", download)]
