"""`relay tail`: the live feed (`/ws/live`) in a terminal, one line per message."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from relaycli import output
from relaycli.client import user_agent
from relaycli.config import Credentials
from relaycli.errors import CliError
from relaycli.listen import MAX_BACKOFF, websocket_url


def describe(message: dict[str, Any], colour: bool) -> str | None:
    """One line for a live message; None for those not shown (stats, acknowledgements)."""
    kind = message.get("type")
    now = output.paint(output.clock(), "dim", colour)
    if kind == "event.received":
        event = message.get("event") or {}
        return (f"{now}  {output.paint('received', 'cyan', colour)}  "
                f"{event.get('source') or '-':<14} {event.get('event_type') or '-':<28} "
                f"{event.get('id')}  {event.get('size')} B")
    if kind in ("delivery.attempted", "delivery.succeeded", "delivery.failed"):
        delivery = message.get("delivery") or {}
        status_code = delivery.get("status_code")
        outcome = str(status_code) if status_code is not None else f"{delivery.get('error')} error"
        word = kind.split(".", 1)[1]
        return (f"{now}  {output.paint(word, output.status_colour(status_code), colour)}  "
                f"{delivery.get('id')} → {delivery.get('endpoint_id')}  {outcome}  "
                f"attempt {delivery.get('attempt')}  {delivery.get('duration_ms') or 0:.0f} ms"
                f"  [{delivery.get('status')}]")
    if kind == "ingest.rejected":
        return (f"{now}  {output.paint('rejected', 'red', colour)}  {message.get('source')}: "
                f"{message.get('reason')}")
    if kind == "endpoint.disabled":
        endpoint = message.get("endpoint") or {}
        return (f"{now}  {output.paint('disabled', 'red', colour)}  {endpoint.get('id')}: "
                f"{endpoint.get('disabled_reason')}")
    if kind == "error":
        return f"{now}  error: {message.get('detail')}"
    return None


def _items(message: dict[str, Any]) -> list[dict[str, Any]]:
    if message.get("type") == "batch":
        return [item for item in message.get("items", []) if isinstance(item, dict)]
    return [message]


async def run(credentials: Credentials, sources: list[str], types: list[str],
              as_json: bool, stats: bool) -> None:
    url = websocket_url(credentials.url, "/ws/live")
    colour = output.use_colour(sys.stdout)
    backoff = 0.5
    while True:
        try:
            async with connect(url, user_agent_header=user_agent(), open_timeout=15,
                               additional_headers={"Authorization":
                                                   f"Bearer {credentials.token}"}) as ws:
                backoff = 0.5
                await ws.send(json.dumps({"type": "subscribe", "sources": sources,
                                          "types": types}))
                async for raw in ws:
                    for item in _items(json.loads(raw)):
                        if item.get("type") == "subscribed" or (
                                item.get("type") == "stats" and not stats):
                            continue
                        if as_json:
                            output.print_json_line(item)
                        elif (line := describe(item, colour)) is not None:
                            output.say(line)
                code = ws.close_code
        except InvalidStatus as refused:
            raise CliError(f"Relay refused the live feed (HTTP "
                           f"{refused.response.status_code}): run relay login") from None
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else None
        except (OSError, TimeoutError) as exc:
            output.say(f"cannot reach Relay ({exc or type(exc).__name__}); retrying in "
                       f"{backoff:g} s", sys.stderr)
            await asyncio.sleep(backoff)
            backoff = min(MAX_BACKOFF, backoff * 2)
            continue
        if code == 4401:
            raise CliError("the token was refused: run relay login")
        output.say(f"live feed closed (code {code}); reconnecting", sys.stderr)
        await asyncio.sleep(backoff)
        backoff = min(MAX_BACKOFF, backoff * 2)
