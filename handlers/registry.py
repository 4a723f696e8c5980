"""Chat commands and card actions are declared here by decorator, with their help text and required roles."""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from cards.model import Message
from core.ledger.scan import Scanned
from core.messaging.recipients import Recipient
from core.models import Document
from core.models.masters import roles_zh


@dataclass(frozen=True)
class Sender:
    """The jxcbot user behind a platform id."""

    id: int
    name: str
    roles: frozenset[str]
    department: str = ""


@dataclass(frozen=True)
class Picture:
    """A picture a user sent, downloaded from the platform before the handler runs (checked by the handler)."""

    data: bytes = field(repr=False)
    content_type: str = ""


@dataclass(frozen=True)
class Context:
    """What a handler gets.

    sender: who wrote or clicked (platform-verified). platform: "wecom" | "dingtalk" | "console".
    now: the time the dispatcher started handling. db / settings: core.storage.Database / core.config.Settings,
    for reads outside a unit of work. event_key: the event's dedupe_key — key every effect by it.
    session: the unit of work, for commands and actions declared `writes=True`: whatever the handler changes
    here commits together with its replies, its notices and the event's handled mark, or not at all (a raised
    DomainError rolls it back and answers the sender with the error). None for read-only handlers.
    notices: filled by tell(): messages to other people, roles or channels, queued in the same transaction.
    card_ref: for a card click, the handle that updates the clicked card in place (WeCom's single-use
    response_code, DingTalk's outTrackId): a reply Message with card_id=card_ref replaces that card.
    picture: for a picture message, the downloaded picture (the picture handler's input)."""

    sender: Sender
    platform: str
    now: datetime
    db: Any  # core.storage.Database
    settings: Any  # core.config.Settings
    event_key: str = ""
    session: AsyncSession | None = None
    notices: list[tuple[Recipient, Message]] = field(default_factory=list)
    card_ref: str | None = None
    picture: Picture | None = None

    def tell(self, to: Recipient, message: Message) -> None:
        """Queue `message` for a user (ToUser), a role (ToRole) or a channel (ToChannel), sent once the event's
        handling commits."""
        self.notices.append((to, message))

    @property
    def unit(self) -> AsyncSession:
        """The unit of work's session; RuntimeError for a handler not declared writes=True."""
        if self.session is None:
            raise RuntimeError("this handler is not declared writes=True: it has no unit of work")
        return self.session


Handler = Callable[[Context, str], Awaitable[list[Message]]]


class Answer(Exception):
    """Raised by a handler to answer with these messages and change nothing (a pick list, a question back):
    the unit of work is rolled back, the event is marked handled and the messages are the reply."""

    def __init__(self, *messages: Message) -> None:
        super().__init__(messages[0].text if messages else "")
        self.messages = list(messages)


def _allowed(roles: frozenset[str], sender: Sender) -> bool:
    return not roles or bool(roles & sender.roles) or "admin" in sender.roles


@dataclass(frozen=True)
class Command:
    """A chat command: the words that call it, one-line help, usage, roles allowed (empty: everyone), and
    whether it changes the ledger (writes: it runs in a unit of work)."""

    names: tuple[str, ...]
    summary: str
    usage: str
    run: Handler = field(repr=False)
    roles: frozenset[str] = frozenset()
    writes: bool = False

    def allowed(self, sender: Sender) -> bool:
        """True when the sender holds one of the roles (or the command is open to everyone)."""
        return _allowed(self.roles, sender)

    def refusal(self) -> str:
        """What a sender without the role is told."""
        return f"「{self.names[0]}」需要以下角色之一：{roles_zh(self.roles)}。如需开通请联系管理员。"

    @property
    def example(self) -> str:
        """One example from the usage (the text after 例如：), or the usage itself when it takes no placeholder."""
        head, sep, tail = self.usage.partition("例如：")
        if sep:
            return tail.rstrip("。").split("；")[0]
        return "" if "<" in head else head


@dataclass(frozen=True)
class Action:
    """A card action: button keys `{prefix}:{rest}` route to it (the handler gets `rest`); roles allowed, and
    whether it changes the ledger (card actions usually do: writes=True by default)."""

    prefix: str
    summary: str
    run: Handler = field(repr=False)
    roles: frozenset[str] = frozenset()
    writes: bool = True

    def allowed(self, sender: Sender) -> bool:
        """True when the clicker holds one of the roles (or the action is open to everyone)."""
        return _allowed(self.roles, sender)

    def refusal(self) -> str:
        """What a clicker without the role is told."""
        return f"这个按钮（{self.summary}）需要以下角色之一：{roles_zh(self.roles)}。如需开通请联系管理员。"


ScanFn = Callable[[Context, Document, Scanned], Awaitable[list[Message]]]


@dataclass(frozen=True)
class ScanTarget:
    """Where a scan goes: the sender's newest draft of `doc_type` gets the scanned line from `run`."""

    doc_type: str
    run: ScanFn = field(repr=False)


COMMANDS: list[Command] = []
SCAN_TARGETS: dict[str, ScanTarget] = {}  # document type → what a scan adds to the sender's draft of that type
ACTIONS: dict[str, Action] = {}
PICTURES: list[Command] = []  # the one handler of picture messages (a list: tests may swap it)
SCANS: list[Command] = []  # the one handler of scan events (its argument text is the raw scanned code)


def command(*names: str, summary: str, usage: str, roles: tuple[str, ...] = (),
            writes: bool = False) -> Callable[[Handler], Handler]:
    """Declare a chat command; the first name is the one help shows."""

    def register(fn: Handler) -> Handler:
        taken = {n for c in COMMANDS for n in c.names}
        if taken & set(names):
            raise ValueError(f"command name already taken: {sorted(taken & set(names))}")
        COMMANDS.append(Command(tuple(names), summary, usage, fn, frozenset(roles), writes))
        return fn

    return register


def action(prefix: str, *, summary: str, roles: tuple[str, ...] = (),
           writes: bool = True) -> Callable[[Handler], Handler]:
    """Declare the card action of button keys starting `prefix:` (e.g. "approval")."""
    if not prefix or ":" in prefix:
        raise ValueError(f"an action prefix is one word without ':' — got {prefix!r}")

    def register(fn: Handler) -> Handler:
        if prefix in ACTIONS:
            raise ValueError(f"action prefix already taken: {prefix!r}")
        ACTIONS[prefix] = Action(prefix, summary, fn, frozenset(roles), writes)
        return fn

    return register


def picture(*, summary: str) -> Callable[[Handler], Handler]:
    """Declare the handler of picture messages (one; it runs in a unit of work and gets ctx.picture)."""

    def register(fn: Handler) -> Handler:
        if PICTURES:
            raise ValueError("a picture handler is already declared")
        PICTURES.append(Command(("图片",), summary, "发送图片", fn, frozenset(), True))
        return fn

    return register


def scanned(*, summary: str, roles: tuple[str, ...] = ()) -> Callable[[Handler], Handler]:
    """Declare the handler of scan events (one; it runs in a unit of work and gets the raw code as its args)."""

    def register(fn: Handler) -> Handler:
        if SCANS:
            raise ValueError("a scan handler is already declared")
        SCANS.append(Command(("扫码",), summary, "在企业微信应用菜单点「扫码」，或在控制台的扫码栏输入条码", fn,
                             frozenset(roles), True))
        return fn

    return register


def scan_target(doc_type: str) -> Callable[[ScanFn], ScanFn]:
    """Declare what a scan does to the sender's draft of `doc_type` (a borrow slip's line, a shipment's batch)."""

    def register(fn: ScanFn) -> ScanFn:
        if doc_type in SCAN_TARGETS:
            raise ValueError(f"a scan target for {doc_type!r} is already declared")
        SCAN_TARGETS[doc_type] = ScanTarget(doc_type, fn)
        return fn

    return register


def find(text: str) -> tuple[Command, str] | None:
    """The command a message calls and its argument text; None when the first word is no command."""
    # split(): any whitespace, including the full-width space (U+3000) a Chinese input method types
    word, rest = [*text.split(maxsplit=1), "", ""][:2]
    word = word.lower()
    for c in COMMANDS:
        if word in (n.lower() for n in c.names):
            return c, rest.strip()
    return None


def suggest(text: str) -> tuple[Command, str] | None:
    """For a message no command takes: the command it most likely meant, and the message as it should be
    written — a command glued to its argument (「库存奶油」 → 「库存 奶油」) or a close misspelling of a
    command's name or alias (「盘店」 → 「盘点」). None when nothing is close."""
    word, rest = [*text.split(maxsplit=1), "", ""][:2]
    lowered = word.lower()
    glued = [(n, c) for c in COMMANDS for n in c.names if len(n) >= 2 and lowered.startswith(n.lower())]
    if glued:
        name, c = max(glued, key=lambda nc: len(nc[0]))
        return c, " ".join(p for p in (name, word[len(name):], rest) if p)
    by_name = {n.lower(): c for c in COMMANDS for n in c.names if len(n) >= 2}
    close = difflib.get_close_matches(lowered, list(by_name), n=1, cutoff=0.5)
    if not close:
        return None
    c = by_name[close[0]]
    return c, " ".join(p for p in (c.names[0], rest) if p)


def find_action(key: str) -> tuple[Action, str] | None:
    """The card action a button key routes to and the rest of the key; None for a key no action declares."""
    prefix, _, rest = key.partition(":")
    found = ACTIONS.get(prefix)
    return (found, rest) if found is not None else None
