"""The self-built app's menu: 扫码 (a scancode_waitmsg button: WeCom scans, shows 消息接收中 and sends the code to
the callback), 待办 and 帮助 (click buttons answered as those commands)."""

from __future__ import annotations

from typing import Any

SCAN_KEY = "jxc_scan"
# Click buttons and the chat command each one runs.
CLICKS = {"jxc_todo": "待办", "jxc_help": "帮助"}

MENU: list[dict[str, Any]] = [
    {"type": "scancode_waitmsg", "name": "扫码", "key": SCAN_KEY},
    {"type": "click", "name": "待办", "key": "jxc_todo"},
    {"type": "click", "name": "帮助", "key": "jxc_help"},
]
