"""bench.callback's ceiling: an aiohttp app whose one POST handler answers 200 "" at once."""

from __future__ import annotations

import sys

from aiohttp import web


def bare_app(path: str) -> web.Application:
    """The bare handler on `path`."""

    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="")

    app = web.Application()
    app.router.add_post(path, ok)
    return app


def main(argv: list[str]) -> None:
    """python -m bench.bare PORT PATH"""
    port, path = argv
    web.run_app(bare_app(path), host="127.0.0.1", port=int(port), print=None)


if __name__ == "__main__":
    main(sys.argv[1:])
