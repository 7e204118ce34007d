"""Terminal output: colours when writing to a terminal (and NO_COLOR is unset), JSON for
scripts."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from typing import Any, TextIO

RESET = "\033[0m"
COLOURS = {"green": "\033[32m", "yellow": "\033[33m", "red": "\033[31m", "dim": "\033[2m",
           "bold": "\033[1m", "cyan": "\033[36m"}


def use_colour(stream: TextIO) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR")


def paint(text: str, colour: str, enabled: bool) -> str:
    return f"{COLOURS[colour]}{text}{RESET}" if enabled else text


def status_colour(status_code: int | None) -> str:
    if status_code is None or status_code >= 500:
        return "red"
    if status_code >= 300:
        return "yellow"
    return "green"


def say(text: str = "", stream: TextIO | None = None) -> None:
    print(text, file=stream or sys.stdout, flush=True)


def print_json(value: Any) -> None:
    say(json.dumps(value, indent=2, ensure_ascii=False))


def print_json_line(value: Any) -> None:
    say(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def clock(iso_time: str | None = None) -> str:
    """HH:MM:SS of an ISO time (local time), or of now."""
    if iso_time:
        try:
            return datetime.fromisoformat(iso_time).astimezone().strftime("%H:%M:%S")
        except ValueError:
            return iso_time
    return datetime.now().strftime("%H:%M:%S")


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows,
                                                                       strict=True)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
             .rstrip() for row in [headers, *rows]]
    return "\n".join(lines)
