"""帮助 / help: what the sender can do, from the commands declared for their roles."""

from __future__ import annotations

from cards.model import Message
from core.models.masters import roles_zh
from handlers.registry import COMMANDS, Context, command


@command("帮助", "help", "?", "？", summary="列出你可以使用的命令", usage="帮助")
async def help_(ctx: Context, args: str) -> list[Message]:
    """The commands the sender may use, with usage; those needing another role are named, not hidden."""
    mine = [c for c in COMMANDS if c.allowed(ctx.sender)]
    others = [c for c in COMMANDS if not c.allowed(ctx.sender)]
    lines = [f"**{ctx.sender.name}，你可以这样用 jxcbot：**"]
    lines += [f"- **{c.names[0]}**：{c.summary}\n  用法：{c.usage}" for c in mine]
    if others:
        lines.append("\n需要其他角色的命令：" + "、".join(f"{c.names[0]}（{roles_zh(c.roles)}）" for c in others))
    return [Message("markdown", title="jxcbot 帮助", text="\n".join(lines))]
