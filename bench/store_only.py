"""bench.callback's second yardstick: the bot's WeCom callback route (verify, decrypt, parse) that only stores."""

from __future__ import annotations

import sys

from aiohttp import web

from bot.dispatch import store_event
from bot.group_commit import GroupCommit
from bot.inbound import Inbound
from bot.platforms import WeComConfig, wecom_routes
from core.storage import Database


def store_only_app(db: Database, corp_id: str, token: str, aes_key: str) -> web.Application:
    """/wecom/callback as the bot serves it, but an accepted event is only stored (group commit), not handled."""
    stores = GroupCommit(db)

    async def accept(event: Inbound) -> bool:  # the bot's own store step, nothing after it
        return bool(await stores.submit(lambda session: store_event(session, event)))

    app = web.Application()
    app.add_routes(wecom_routes(WeComConfig(corp_id, 1000002, "unused", token, aes_key), accept))

    async def close(_app: web.Application) -> None:
        await stores.close()
        await db.dispose()

    app.on_cleanup.append(close)
    return app


def main(argv: list[str]) -> None:
    """python -m bench.store_only PORT DATABASE_URL CORP_ID TOKEN AES_KEY (the schema must exist)."""
    port, url, corp_id, token, aes_key = argv
    web.run_app(store_only_app(Database(url), corp_id, token, aes_key), host="127.0.0.1", port=int(port),
                print=None)


if __name__ == "__main__":
    main(sys.argv[1:])
