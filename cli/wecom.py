"""jxcbot wecom menu: install the self-built app's menu (扫码, 待办, 帮助) through WeCom's menu/create."""

from __future__ import annotations

import argparse
import sys

import aiohttp

from bot.platforms import wecom_config
from bot.transport import SendError
from bot.wecom.client import WeComClient
from bot.wecom.menu import MENU
from core.config import Settings
from core.errors import DomainError

EXIT_OK, EXIT_BAD_INPUT, EXIT_PLATFORM = 0, 2, 3


async def cmd_wecom(settings: Settings, args: argparse.Namespace) -> int:
    """Install the app menu; the app's secret comes from JXCBOT_WECOM_SECRET like the server's."""
    cfg = wecom_config(settings.raw)
    if cfg is None or not cfg.has_app:
        raise DomainError("NO_WECOM_APP", "没有配置企业微信自建应用",
                          "请在配置文件 [wecom] 中填写 corp_id、agent_id，并设置环境变量 JXCBOT_WECOM_SECRET")
    async with aiohttp.ClientSession() as session:
        client = WeComClient(session, cfg.corp_id, cfg.agent_id, cfg.secret, cfg.api_base)
        try:
            await client.create_menu(MENU)
        except SendError as e:
            print(f"错误：企业微信拒绝了菜单（错误码 {e.code}）。\n处理办法：确认应用的 Secret 正确、服务器 IP 在应用的"
                  "「企业可信IP」中，并在管理后台「应用管理」里打开该应用的自定义菜单权限", file=sys.stderr)
            return EXIT_PLATFORM
    names = "、".join(b["name"] for b in MENU)
    print(f"已为企业微信应用 {cfg.agent_id} 安装菜单：{names}。成员在应用里点「扫码」即可扫商品条码和批次。")
    return EXIT_OK
