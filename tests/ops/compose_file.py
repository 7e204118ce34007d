"""compose.yaml read the way `docker compose` reads it, and its commands made local.

Interpolation follows compose's rules for the forms the file uses: `${VAR}`,
`${VAR:-default}` and `${VAR:?message}` (an error when VAR is unset or empty).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_PATH = ROOT / "compose.yaml"
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|:\?)(?P<arg>[^}]*))?\}")


class MissingVariable(Exception):
    pass


def interpolate(text: str, variables: dict[str, str]) -> str:
    def replace(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        value = variables.get(name, "")
        if value:
            return value
        if op == ":?":
            raise MissingVariable(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return _VARIABLE.sub(replace, text)


def _walk(node: Any, variables: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, variables)
    if isinstance(node, list):
        return [_walk(item, variables) for item in node]
    if isinstance(node, dict):
        return {key: _walk(value, variables) for key, value in node.items()}
    return node


def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_PATH.read_text())


def load(variables: dict[str, str]) -> dict[str, Any]:
    return _walk(raw(), variables)


def option_value(command: list[str], option: str) -> str | None:
    for index, word in enumerate(command):
        if word == option and index + 1 < len(command):
            return command[index + 1]
        if word.startswith(option + "="):
            return word.split("=", 1)[1]
    return None


def with_option(command: list[str], option: str, value: str) -> list[str]:
    """`command` with `option`'s value replaced (both `--opt v` and `--opt=v` forms)."""
    result = list(command)
    for index, word in enumerate(result):
        if word == option:
            result[index + 1] = value
            return result
        if word.startswith(option + "="):
            result[index] = f"{option}={value}"
            return result
    raise AssertionError(f"{option} is not in {command}")


def local(command: list[str]) -> list[str]:
    """Run the image's `python`/`uvicorn` with this checkout's interpreter."""
    if command[0] == "python":
        return [sys.executable, *command[1:]]
    if command[0] == "uvicorn":
        return [sys.executable, "-m", "uvicorn", *command[1:]]
    return command
