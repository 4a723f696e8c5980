"""WeCom's shape of a neutral message: byte limits, and the parts one message goes out as (app and group robot)."""

from __future__ import annotations

from typing import Protocol

from cards import render
from cards.model import FILE_LIMIT, Message, file_as_markdown
from cards.split import split_utf8

TEXT_LIMIT = 2048  # bytes, app and robot text
APP_MARKDOWN_LIMIT = 2048  # bytes, app message/send markdown (protocols/wecom.md §3.2)
ROBOT_MARKDOWN_LIMIT = 4096  # bytes, group robot markdown (§4)
NEWS_TITLE_LIMIT = 128  # bytes, a news article's title (app and robot)
NEWS_DESCRIPTION_LIMIT = 512  # bytes, its description


class Addressed(Protocol):
    """What shaping needs to know of a target: its kind ("user", "robot", …)."""

    kind: str


def with_title(message: Message, bold: bool) -> str:
    """The text of a text or markdown message with its title on the first line (bold in markdown)."""
    if not message.title:
        return message.text
    head = f"**{message.title}**" if bold else message.title
    return f"{head}\n{message.text}" if message.text else head


def _pieces(kind: str, content: str, limit: int) -> list[Message]:
    if not content.strip():  # left whole: the send refuses it (44004, permanent)
        return [Message(kind, text=content)]
    return [Message(kind, text=piece) for piece in split_utf8(content, limit)]


def message_parts(target: Addressed, message: Message) -> list[Message]:
    """The messages `message` goes out as to a WeCom target, one platform call each, in order: text and
    markdown (title included) split at the byte limit of the app (2048 B) or robot (text 2048 B, markdown
    4096 B), an image's title as text before it, a card without buttons (not an update, not one of a copy
    group) as markdown. Cards with buttons, updates and cards of a group (to a user: the sender may update the
    copy in place) stay whole; a file goes as its caption (markdown) then the file alone (media upload type=file;
    over 20 MB: the caption with its download link). message_parts(target, part) == [part] for every part."""
    robot = target.kind == "robot"
    markdown_limit = ROBOT_MARKDOWN_LIMIT if robot else APP_MARKDOWN_LIMIT
    if message.kind == "text":
        return _pieces("text", with_title(message, bold=False), TEXT_LIMIT)
    if message.kind == "markdown":
        return _pieces("markdown", with_title(message, bold=True), markdown_limit)
    if message.kind == "image":
        caption = _pieces("text", message.title, TEXT_LIMIT) if message.title else []
        return [*caption, Message("image", png=message.png)] if caption else [message]
    if message.kind == "link":  # one news article; its title and description are cut to WeCom's limits
        return [message]
    if message.kind == "file":  # the caption as markdown, then the file (over the upload limit: its link)
        if len(message.data or b"") > FILE_LIMIT:
            return message_parts(target, file_as_markdown(message))
        if not (message.title or message.text):
            return [message]
        caption = Message("markdown", title=message.title, text=message.text)
        return [*message_parts(target, caption), Message("file", data=message.data, filename=message.filename,
                                                         url=message.url)]
    if robot or not (message.card_id or message.buttons or message.group):  # robots cannot carry callback buttons
        return _pieces("markdown", render.card_markdown(message, "wecom"), markdown_limit)
    return [message]


def news_article(message: Message) -> dict[str, str]:
    """A link message as one WeCom news article (app and robot): title ≤ 128 B, description ≤ 512 B, cut on
    character boundaries."""
    article = {"title": split_utf8(message.title, NEWS_TITLE_LIMIT)[0], "url": message.url}
    if message.text.strip():
        article["description"] = split_utf8(message.text, NEWS_DESCRIPTION_LIMIT)[0]
    if message.pic_url:
        article["picurl"] = message.pic_url
    return article
