"""Byte-limited splitting of message text, shared by the platform shaping and the outbox enqueue."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["TooLarge", "fit", "split_utf8"]


class TooLarge(ValueError):
    """A message that cannot be cut to fit a platform's limit (its envelope alone is too large): never sendable."""


def split_utf8(text: str, limit: int) -> list[str]:
    """text cut into pieces of at most `limit` UTF-8 bytes, never inside a character, preferably just after a
    newline (when that keeps the piece at least half full). "".join(pieces) == text; [text] when it fits."""
    if limit < 4:
        raise ValueError("limit must be at least 4 bytes (one UTF-8 character)")
    data = text.encode("utf-8")
    if len(data) <= limit:
        return [text]
    pieces: list[str] = []
    start = 0
    while len(data) - start > limit:
        end = start + limit
        while (data[end] & 0xC0) == 0x80:  # data[end] starts the next piece: never a continuation byte
            end -= 1
        newline = data.rfind(b"\n", start, end)  # 0x0A never occurs inside a multi-byte character
        if newline >= start and newline + 1 - start >= limit // 2:
            end = newline + 1
        pieces.append(data[start:end].decode("utf-8"))
        start = end
    pieces.append(data[start:].decode("utf-8"))
    return pieces


def fit(text: str, limit: int, size: Callable[[str], int]) -> list[str]:
    """Pieces of text (in order, re-joining to text) such that size(piece) <= limit, where size measures the
    encoded message around the piece (JSON escaping can make it larger than the piece's own bytes)."""
    overhead = size("")
    if overhead + 8 > limit:
        raise TooLarge("message envelope alone exceeds the size limit")
    out: list[str] = []
    stack = [(text, limit - overhead)]
    while stack:
        chunk, budget = stack.pop()
        measured = size(chunk)
        if measured <= limit:
            out.append(chunk)
            continue
        pieces = split_utf8(chunk, budget)
        if len(pieces) == 1:  # within the byte budget but escaping made it grow: shrink the budget
            nbytes = len(chunk.encode("utf-8"))
            budget = max(4, min(nbytes - 1, budget * (limit - overhead) // (measured - overhead)))
            stack.append((chunk, budget))
            continue
        stack.extend((piece, budget) for piece in reversed(pieces))
    return out
