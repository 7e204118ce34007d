"""The platform-neutral message a template renders: what every notification kind formats."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Message:
    title: str
    text: str = ""
    fields: list[tuple[str, str]] = field(default_factory=list)
    """(name, value) pairs in template order; empty values are left out."""
    url: str | None = None
    """A link to what the event is about (a commit, a pull request), when the preset has one."""
