"""Platform renderings of neutral cards through the Jinja2 templates in cards/templates/ (loaded once)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, Template

from cards.model import Message

__all__ = ["card_markdown", "card_text", "dingtalk_card_params", "wecom_card_update", "wecom_template_card"]


def clip(text: str, limit: int) -> str:
    """text cut to at most `limit` characters, the last one an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def first_line(text: str) -> str:
    """The first non-blank line of text, stripped ("" when there is none)."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


# Autoescape is off: the .json templates pass every value through tojson (a JSON literal, with <, >, & and '
# escaped as \u003c …), and the .txt/.md templates produce chat text, which must not be HTML-escaped.
_ENV = Environment(loader=PackageLoader("cards", "templates"), undefined=StrictUndefined, autoescape=False,
                   auto_reload=False, keep_trailing_newline=False)
_ENV.filters["clip"] = clip
_ENV.filters["first_line"] = first_line
_ENV.policies["json.dumps_kwargs"] = {"ensure_ascii": False, "sort_keys": False}

TEMPLATES = ("wecom/template_card.json.j2", "wecom/update_card.json.j2", "dingtalk/card_params.json.j2",
             "text/card.txt.j2", "text/card.md.j2")
_T: dict[str, Template] = {name: _ENV.get_template(name) for name in TEMPLATES}


def _json(name: str, **context: Any) -> Any:
    return json.loads(_T[name].render(**context))


def wecom_template_card(message: Message, task_id: str) -> dict[str, Any]:
    """The WeCom `template_card` (card_type button_interaction) of a card with buttons (checks are the caller's)."""
    return _json("wecom/template_card.json.j2", message=message, task_id=task_id)


def wecom_card_update(message: Message, *, user: str, agent_id: int, response_code: str,
                      task_id: str) -> dict[str, Any]:
    """The update_template_card body: the whole card replaced (with buttons, under task_id) or its buttons
    greyed out and relabelled with the title or the text's first line."""
    return _json("wecom/update_card.json.j2", message=message, user=user, agent_id=agent_id,
                 response_code=response_code, task_id=task_id)


def dingtalk_card_params(message: Message) -> dict[str, str]:
    """The cardParamMap of the generic DingTalk card template: title, content and buttons (a JSON string)."""
    return _json("dingtalk/card_params.json.j2", message=message)


def card_text(message: Message, platform: str, links: Mapping[str, str] | None = None) -> str:
    """A card as plain text: title, body and the buttons with what to do (each button's link when every button
    has one in `links`, by button key; else where to click them on `platform`)."""
    return _T["text/card.txt.j2"].render(message=message, platform=platform, links=dict(links or {}))


def card_markdown(message: Message, platform: str, links: Mapping[str, str] | None = None) -> str:
    """A card as markdown: bold title, body and the buttons with what to do (as card_text)."""
    return _T["text/card.md.j2"].render(message=message, platform=platform, links=dict(links or {}))
