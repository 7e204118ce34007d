"""`relay login`: the token is checked against the server, then kept in
$XDG_CONFIG_HOME/relay/config.toml readable by its owner only; errors say what to do."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

from tests.servers import free_port


def _logged_out(cli_env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in cli_env.items() if k not in ("RELAY_URL", "RELAY_TOKEN")}


async def test_login_keeps_url_and_token_mode_0600(cli_env, run_cli, relay_server, admin_token):
    env = _logged_out(cli_env)
    result = await run_cli("login", "--url", relay_server + "/", "--token", admin_token, env=env)
    assert result.code == 0, result.stderr
    path = Path(env["XDG_CONFIG_HOME"]) / "relay" / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert tomllib.loads(path.read_text()) == {"url": relay_server, "token": admin_token}

    listed = await run_cli("events", "--json", env=env)
    assert listed.code == 0 and listed.json() == []


async def test_environment_wins_over_the_file(cli_env, run_cli, relay_server, admin_token):
    env = _logged_out(cli_env)
    await run_cli("login", "--url", relay_server, "--token", admin_token, env=env)
    result = await run_cli("events", env={**env, "RELAY_TOKEN": "rly_wrong"})
    assert result.code == 1 and "run relay login" in result.stderr


async def test_login_errors(cli_env, run_cli, relay_server):
    env = _logged_out(cli_env)
    refused = await run_cli("login", "--url", relay_server, "--token", "rly_wrong", env=env)
    assert refused.code == 1 and "refused this token" in refused.stderr
    assert not (Path(env["XDG_CONFIG_HOME"]) / "relay" / "config.toml").exists()

    down = await run_cli("login", "--url", f"http://127.0.0.1:{free_port()}", "--token", "x",
                         env=env)
    assert down.code == 1 and "cannot reach Relay" in down.stderr

    usage = await run_cli("login", "--url", "127.0.0.1:8000", "--token", "x", env=env)
    assert usage.code == 2


async def test_no_token_and_usage_errors(cli_env, run_cli):
    env = _logged_out(cli_env)
    missing = await run_cli("events", env=env)
    assert missing.code == 1 and "run relay login" in missing.stderr
    assert (await run_cli("frobnicate", env=env)).code == 2
    assert (await run_cli("listen", env=env)).code == 2
    assert (await run_cli("events", "--limit", "0", env=env)).code == 2
