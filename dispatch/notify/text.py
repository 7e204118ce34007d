"""Fitting text into a platform's limits: cut, marked with an ellipsis, never refused."""

from __future__ import annotations

ELLIPSIS = "…"


def cut(text: str, limit: int) -> str:
    """`text` if it fits in `limit` characters, else its start and `…` (exactly `limit`)."""
    if limit <= 0:
        return ""
    if len(text) <= limit:
        return text
    return text[: limit - 1] + ELLIPSIS


def one_line(text: str) -> str:
    """Line breaks folded into spaces (subjects, titles)."""
    return " ".join(text.split())
