"""Chat commands are declared here by decorator, with their names, help text and required roles."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cards.model import Message


@dataclass(frozen=True)
class Sender:
    """The jxcbot user behind a platform id."""

    id: int
    name: str
    roles: frozenset[str]
    department: str = ""


@dataclass(frozen=True)
class Context:
    """What a handler gets: who asked, on which platform, when, and the database/settings to use."""

    sender: Sender
    platform: str
    now: datetime
    db: Any  # core.storage.database.Database
    settings: Any  # core.config.Settings


Handler = Callable[[Context, str], Awaitable[list[Message]]]


@dataclass(frozen=True)
class Command:
    """A chat command: the words that call it, one-line help, usage, and roles allowed (empty: everyone)."""

    names: tuple[str, ...]
    summary: str
    usage: str
    run: Handler = field(repr=False)
    roles: frozenset[str] = frozenset()

    def allowed(self, sender: Sender) -> bool:
        """True when the sender holds one of the roles (or the command is open to everyone)."""
        return not self.roles or bool(self.roles & sender.roles) or "admin" in sender.roles


COMMANDS: list[Command] = []


def command(*names: str, summary: str, usage: str, roles: tuple[str, ...] = ()) -> Callable[[Handler], Handler]:
    """Declare a chat command; the first name is the one help shows."""

    def register(fn: Handler) -> Handler:
        taken = {n for c in COMMANDS for n in c.names}
        if taken & set(names):
            raise ValueError(f"command name already taken: {sorted(taken & set(names))}")
        COMMANDS.append(Command(tuple(names), summary, usage, fn, frozenset(roles)))
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
