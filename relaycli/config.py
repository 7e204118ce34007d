"""Where the CLI finds its server and token: `$XDG_CONFIG_HOME/relay/config.toml`
(`~/.config/relay/config.toml`), written by `relay login` with mode 0600; the
environment variables `RELAY_URL` and `RELAY_TOKEN` win over it."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from relaycli.errors import CliError


@dataclass(frozen=True)
class Credentials:
    url: str
    token: str


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "relay" / "config.toml"


def _toml_string(value: str) -> str:
    """A TOML basic string (the config holds two plain strings: no need for a writer)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(ch if ch >= " " and ch != "\x7f" else f"\\u{ord(ch):04x}"
                      for ch in escaped)
    return f'"{escaped}"'


def save(credentials: Credentials) -> Path:
    """Write the config file, readable by its owner only (it holds a token)."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = (f"url = {_toml_string(credentials.url)}\n"
            f"token = {_toml_string(credentials.token)}\n")
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)
    return path


def load_file() -> dict[str, str]:
    path = config_path()
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}; run relay login again") from None
    return {key: value for key, value in data.items() if isinstance(value, str)}


def credentials() -> Credentials:
    """The server and token to use, or a CliError that says how to get them."""
    stored = load_file()
    url = os.environ.get("RELAY_URL") or stored.get("url")
    token = os.environ.get("RELAY_TOKEN") or stored.get("token")
    if not url or not token:
        raise CliError("not logged in: run relay login --url URL --token TOKEN "
                       "(or set RELAY_URL and RELAY_TOKEN)")
    return Credentials(url.rstrip("/"), token)
