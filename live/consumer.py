"""`/ws/live`: the live stream for the dashboard and for scripts.

The handshake is refused (HTTP 403) without a valid token (`?token=`) or dashboard
session. After it, the server sends every live message; the client may narrow them with
`{"type": "subscribe", "sources": [...], "endpoints": [...], "types": [...]}` and gets
`{"type": "subscribed", ...}` back with what now applies. Messages wait in a bounded
outbox and leave in one frame per wake-up (a batch under load), so a slow client sheds
its own oldest messages (`"dropped": n`) instead of slowing anyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from channels.generic.websocket import AsyncWebsocketConsumer

from live.auth import authenticate
from live.encoding import encode
from live.hub import hub
from live.outbox import Outbox
from live.subscription import SubscribeError, Subscription, parse_subscribe

log = logging.getLogger("relay.live")

CLOSE_UNAUTHORIZED = 4401
SEND_INTERVAL = 0.05
"""At most one frame per client per this many seconds: a message after a quiet spell
leaves at once; under load each frame carries what arrived meanwhile. A frame costs the
web process about the same whatever its size (the socket write, mostly), so fewer, larger
frames leave more of it to ingest; the interval is also the most it adds to a message's
way to the client."""
MAX_CLIENT_MESSAGE = 64 * 1024
JOIN_WAIT = 2.0
"""The handshake waits at most this long for the process to receive the live group (the
first client of a web worker: a LISTEN or SUBSCRIBE), so a client misses nothing published
once it is connected; past it the client is accepted anyway and messages follow later."""


class LiveConsumer(AsyncWebsocketConsumer):
    channel_layer_alias = None
    """No channel per client: the process's hub holds the one group membership."""

    token_id: str | None = None
    scope_name: str | None = None
    _sender: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        token = await authenticate(self.scope)
        if token is None:
            await self.close()
            return
        self.token_id, self.scope_name = token.id, token.scope
        self.subscription = Subscription()
        self.outbox = Outbox()
        self._wakeup = asyncio.Event()
        hub.add(self)
        try:
            await hub.wait_joined(JOIN_WAIT)
            await self.accept()
        except BaseException:
            # The client left during the handshake (a page reloaded or closed at once):
            # the accept fails and `disconnect` never runs, so the hub must forget it here.
            await hub.remove(self)
            raise
        self._sender = asyncio.get_running_loop().create_task(self._send_loop())

    def wake(self) -> None:
        self._wakeup.set()

    def revoke(self) -> None:
        """The token was revoked while connected: close with 4401."""
        asyncio.get_running_loop().create_task(self.close(code=CLOSE_UNAUTHORIZED))

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_send = 0.0
        try:
            while True:
                await self._wakeup.wait()
                wait = last_send + SEND_INTERVAL - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._wakeup.clear()
                while (frame := self.outbox.take_frame()) is not None:
                    last_send = loop.time()
                    await self.send(text_data=frame)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the client went away; disconnect follows
            log.debug("live: send failed: %s", exc)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.token_id is None:
            return
        try:
            if text_data is None or len(text_data) > MAX_CLIENT_MESSAGE:
                raise SubscribeError("send JSON text frames of at most 64 KiB")
            try:
                payload = json.loads(text_data)
            except ValueError:
                raise SubscribeError("not JSON") from None
            if not isinstance(payload, dict) or payload.get("type") != "subscribe":
                raise SubscribeError('the only message a client sends is {"type": "subscribe", ...}')
            self.subscription = parse_subscribe(payload)
            reply = {"type": "subscribed", **self.subscription.describe()}
        except SubscribeError as problem:
            reply = {"type": "error", "detail": str(problem)}
        self.outbox.put(encode(reply))
        self.wake()

    async def disconnect(self, code: int) -> None:
        await hub.remove(self)
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
            self._sender = None
