"""帮助 / help: what the sender can do, from the commands declared for their roles; and what to say to a
message no command takes (the closest command)."""

from __future__ import annotations

import re

from cards.model import Message, text
from core.models.masters import roles_zh
from handlers.registry import COMMANDS, Command, Context, Sender, command, find, suggest

MAX_ECHO = 30
# The order help lists capabilities in (by handler module); modules not named here come after, by name.
ORDER = ("stock", "counts", "movements", "borrow", "purchase", "sales", "approvals", "documents", "diagnose")


def _rank(c: Command) -> tuple[int, str]:
    module = c.run.__module__.rpartition(".")[2]
    return (ORDER.index(module) if module in ORDER else len(ORDER), module)


def _short(s: str, n: int = MAX_ECHO) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


# Headings of the capabilities, by handler module.
GROUPS = {"stock": "查询", "counts": "盘点", "movements": "出入库", "borrow": "借货", "sales": "销售",
          "purchase": "采购", "approvals": "审批", "documents": "单据", "diagnose": "诊断", "health": "改进计划",
          "help": "帮助"}
BRIEF = 8  # characters of a command's summary shown in the list (帮助 <命令> shows it whole)


def _brief(c: Command) -> str:
    head = re.split(r"[：，（；:,(]", c.summary, maxsplit=1)[0]
    if head == c.names[0] and "：" in c.summary:  # "盘点：开一张盘点单…" → what comes after the name
        head = re.split(r"[，（；,(]", c.summary.split("：", 1)[1], maxsplit=1)[0]
    return head if len(head) <= BRIEF else head[: BRIEF - 1] + "…"


def _line(c: Command) -> str:
    example = c.example.split("、")[0]
    shown = example if example.startswith(c.names[0]) else f"{c.names[0]}（{example}）" if example else c.names[0]
    return f"- {shown} — {_brief(c)}"


@command("帮助", "help", "?", "？", summary="列出你可以使用的命令；「帮助 <命令>」看一个命令的完整用法",
         usage="帮助 [命令]，例如：帮助、帮助 盘点")
async def help_(ctx: Context, args: str) -> list[Message]:
    """The commands the sender's roles allow, by capability, one example each (kept to one WeCom message);
    `帮助 <命令>` gives one command in full."""
    if args:
        return [_one(ctx.sender, args)]
    mine = sorted((c for c in COMMANDS if c.allowed(ctx.sender)), key=_rank)
    others = [c for c in COMMANDS if not c.allowed(ctx.sender)]
    roles = roles_zh(ctx.sender.roles) if ctx.sender.roles else "未分配角色"
    lines = [f"**{ctx.sender.name}，你可以这样用 jxcbot：**（你的角色：{roles}）"]
    group = None
    for c in mine:
        module = c.run.__module__.rpartition(".")[2]
        if module != group:
            lines.append(f"**{GROUPS.get(module, '其他')}**")
            group = module
        lines.append(_line(c))
    lines.append("发送「帮助 <命令>」查看完整用法，例如：帮助 " + (mine[0].names[0] if mine else "库存"))
    if others:
        needed = roles_zh(set().union(*(c.roles for c in others)))
        lines.append(f"另有 {len(others)} 个命令需要其他角色（{needed}），如需开通请联系管理员。")
    return [Message("markdown", title="jxcbot 帮助", text="\n".join(lines))]


def _one(sender: Sender, name: str) -> Message:
    found = find(name)
    if found is None:
        guess = suggest(name)
        hint = f"你是不是想问「帮助 {guess[0].names[0]}」？" if guess else "发送「帮助」查看全部命令。"
        return text(f"没有叫「{_short(name)}」的命令。{hint}")
    c = found[0]
    body = [f"**{c.names[0]}**：{c.summary}", f"用法：{c.usage}"]
    if len(c.names) > 1:
        body.append("也可以发：" + "、".join(c.names[1:]))
    if not c.allowed(sender):
        body.append(c.refusal())
    return Message("markdown", title=f"帮助：{c.names[0]}", text="\n".join(body))


def not_understood(message: str) -> str:
    """The reply to a message no command takes: the command it most likely meant, with the message as it
    should be written, or how to find the commands."""
    guess = suggest(message)
    if guess is None:
        return f"没有看懂「{_short(message)}」。发送「帮助」查看可用的命令，例如：库存 奶油"
    c, fixed = guess
    how = f"例如：{c.example}" if c.example else f"用法：{c.usage}"
    return (f"没有看懂「{_short(message)}」。你是不是想用「{c.names[0]}」？可以这样发：{_short(fixed, 60)}\n"
            f"（{c.summary}；{how}）")
