"""`relay listen`: pull the deliveries of a `cli` endpoint over a WebSocket and forward each
to a local URL, reporting every answer back so Relay records it as the attempt.

The connection is kept up: when it drops (Relay restarted, the laptop slept) it is made
again with backoff, and deliveries that arrived meanwhile come in order.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from relaycli import output
from relaycli.client import explain, unreachable, user_agent
from relaycli.config import Credentials
from relaycli.errors import CliError

BODY_LIMIT = 8 * 1024
MAX_BACKOFF = 10.0
FATAL_CLOSE = {
    4401: "the token was refused: run relay login",
    4403: "relay listen needs an admin token: run relay login with one",
    4404: "the endpoint is gone (deleted?): start relay listen again",
    4400: "Relay refused a result of this CLI (a bug: please report it)",
}


@dataclass
class ListenOptions:
    forward_to: str
    sources: list[str] = field(default_factory=list)
    event_types: list[str] = field(default_factory=list)
    name: str | None = None
    json: bool = False


@dataclass
class Registration:
    name: str
    endpoint_id: str
    secret: str
    websocket_url: str
    created: bool


def websocket_url(base: str, path: str) -> str:
    if base.startswith("https://"):
        return "wss://" + base[len("https://"):] + path
    return "ws://" + base.removeprefix("http://") + path


async def register(credentials: Credentials, options: ListenOptions) -> Registration:
    payload = {"forward_to": options.forward_to, "sources": options.sources,
               "event_types": options.event_types}
    if options.name:
        payload["name"] = options.name
    try:
        async with httpx.AsyncClient(base_url=credentials.url, timeout=15) as http:
            response = await http.post(
                "/api/v1/cli/listen", json=payload,
                headers={"Authorization": f"Bearer {credentials.token}",
                         "User-Agent": user_agent()})
    except httpx.TransportError as exc:
        raise unreachable(credentials.url, exc) from None
    if response.status_code == 401:
        raise CliError(f"the token was refused ({explain(response)}): run relay login")
    if response.status_code not in (200, 201):
        raise CliError(f"cannot register the listener: {explain(response)}")
    data = response.json()
    return Registration(name=data["name"], endpoint_id=data["endpoint"]["id"],
                        secret=data["secret"], created=data["created"],
                        websocket_url=websocket_url(credentials.url, data["websocket_path"]))


# --- forwarding ------------------------------------------------------------------------------


def _header_bytes(value: str) -> bytes:
    """Stored header values are latin-1 round trips of the bytes that arrived."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


def _chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _error_detail(exc: BaseException) -> str:
    """The most specific reason in the chain ("Connection refused", not httpx's summary)."""
    for item in reversed(_chain(exc)):
        if isinstance(item, OSError) and item.strerror:
            return item.strerror
    return str(exc) or type(exc).__name__


def _error_kind(exc: BaseException) -> str:
    chain = _chain(exc)
    if any(isinstance(item, socket.gaierror) for item in chain):
        return "dns"
    if any(isinstance(item, ssl.SSLError) for item in chain):
        return "tls"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect"
    return "protocol"


async def forward(target: httpx.AsyncClient, url: str, delivery: dict[str, Any]) -> dict[str, Any]:
    """Send one delivery to the local URL; the report for Relay (never raises)."""
    headers: dict[str, str] = delivery["headers"]
    body = base64.b64decode(delivery["body"])
    timeout = float(delivery.get("timeout_seconds") or 15.0)
    report: dict[str, Any] = {"type": "result", "delivery_id": delivery["delivery_id"]}
    started = time.perf_counter()
    try:
        request = target.build_request(
            delivery.get("method") or "POST", url, content=body,
            headers=[(name.encode("latin-1"), _header_bytes(value))
                     for name, value in headers.items()])
        for name in ("accept", "accept-encoding"):
            if name not in headers:
                del request.headers[name]
        request.headers["accept-encoding"] = headers.get("accept-encoding", "identity")
        async with asyncio.timeout(timeout):
            response = await target.send(request, stream=True)
            try:
                kept = bytearray()
                async for chunk in response.aiter_bytes():
                    kept += chunk
                    if len(kept) >= BODY_LIMIT:
                        break
            finally:
                await response.aclose()
        answer_headers: dict[str, str] = {}
        for name, value in response.headers.multi_items():
            name = name.lower()
            answer_headers[name] = f"{answer_headers[name]}, {value}" if name in answer_headers \
                else value
        report.update(status_code=response.status_code, headers=answer_headers,
                      body=bytes(kept[:BODY_LIMIT]).decode("utf-8", "replace"))
    except TimeoutError:
        report.update(error="timeout", error_detail=f"no complete answer within {timeout:g} s")
    except (httpx.HTTPError, OSError) as exc:
        report.update(error=_error_kind(exc), error_detail=_error_detail(exc))
    report["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return report


# --- the session -----------------------------------------------------------------------------


class Printer:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.colour = output.use_colour(sys.stdout)

    def delivery(self, delivery: dict[str, Any], report: dict[str, Any],
                 settled: dict[str, Any]) -> None:
        status_code = report.get("status_code")
        if self.as_json:
            output.print_json_line({
                "time": output.clock(), "delivery_id": delivery["delivery_id"],
                "event_id": delivery["event_id"], "event_type": delivery.get("event_type"),
                "source": delivery.get("source"), "attempt": delivery.get("attempt"),
                "status_code": status_code, "error": report.get("error"),
                "duration_ms": report.get("duration_ms"), "status": settled.get("status"),
                "next_attempt_at": settled.get("next_attempt_at"),
            })
            return
        if status_code is not None:
            outcome = str(status_code)
        else:
            outcome = f"{report.get('error')} error ({report.get('error_detail')})"
        line = "  ".join([
            output.paint(output.clock(), "dim", self.colour),
            f"{delivery.get('event_type') or '-':<28}",
            delivery["event_id"],
            output.paint(f"→ {outcome}", output.status_colour(status_code), self.colour),
            f"{report.get('duration_ms', 0):.0f} ms",
        ])
        if (delivery.get("attempt") or 1) > 1:
            line += f"  (attempt {delivery['attempt']})"
        if settled.get("status") == "retrying" and settled.get("next_attempt_at"):
            line += output.paint(f"  retry at {output.clock(settled['next_attempt_at'])}",
                                 "dim", self.colour)
        elif settled.get("status") == "failed":
            line += output.paint("  failed: no retries left", "red", self.colour)
        output.say(line)

    def note(self, text: str) -> None:
        output.say(text, sys.stderr)


async def session(ws: ClientConnection, target: httpx.AsyncClient, url: str,
                  printer: Printer) -> None:
    """Serve one connection until it closes."""
    waiting: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    async for raw in ws:
        message = json.loads(raw)
        kind = message.get("type")
        if kind == "delivery":
            report = await forward(target, url, message)
            waiting[message["delivery_id"]] = (message, report)
            await ws.send(json.dumps(report))
        elif kind == "settled":
            entry = waiting.pop(message.get("delivery_id", ""), None)
            if entry is not None:
                printer.delivery(entry[0], entry[1], message)
        elif kind == "error":
            printer.note(f"relay: {message.get('detail')}")


async def run(credentials: Credentials, options: ListenOptions) -> None:
    registration = await register(credentials, options)
    printer = Printer(options.json)
    verb = "Registered" if registration.created else "Resumed"
    printer.note(
        f"{verb} listener {registration.name!r} (endpoint {registration.endpoint_id}).\n"
        f"Forwarding to {options.forward_to}\n"
        f"Signing secret (verify the webhook-signature header with it): {registration.secret}\n"
        f"Ctrl-C stops; deliveries then wait for: relay listen --name {registration.name} "
        f"--forward-to {options.forward_to}")
    backoff = 0.5
    connected_once = False
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False,
                                 timeout=httpx.Timeout(60.0)) as target:
        while True:
            try:
                async with connect(
                        registration.websocket_url, user_agent_header=user_agent(),
                        additional_headers={"Authorization": f"Bearer {credentials.token}"},
                        max_size=64 * 1024 * 1024, open_timeout=15) as ws:
                    printer.note("Reconnected." if connected_once else
                                 "Connected; waiting for events.")
                    connected_once, backoff = True, 0.5
                    await session(ws, target, options.forward_to, printer)
                    code = ws.close_code
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd is not None else None
            except InvalidStatus as refused:
                raise CliError(f"Relay refused the connection (HTTP "
                               f"{refused.response.status_code}): run relay login") from None
            except (OSError, TimeoutError) as exc:
                printer.note(f"cannot reach Relay ({exc or type(exc).__name__}); "
                             f"retrying in {backoff:g} s")
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)
                continue
            if code in FATAL_CLOSE:
                raise CliError(FATAL_CLOSE[code])
            printer.note(f"connection to Relay lost (code {code}); reconnecting")
            await asyncio.sleep(backoff)
            backoff = min(MAX_BACKOFF, backoff * 2)
