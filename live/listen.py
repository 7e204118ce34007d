"""`/ws/cli/<endpoint_id>`: where a `relay listen` pulls the deliveries of its `cli` endpoint.

Admin token only (`Authorization: Bearer` or `?token=`). After `{"type": "ready"}` the
server sends one `{"type": "delivery", ...}` at a time (dispatch.cli.delivery_message);
the client forwards it and answers `{"type": "result", "delivery_id", "status_code" |
"error", "headers", "body", "duration_ms", "error_detail"}`; the server records the
attempt and answers `{"type": "settled", "delivery_id", "status", "attempt",
"next_attempt_at"}` before sending the next delivery. Close codes: 4401 no valid token,
4403 not an admin token, 4404 no such `cli` endpoint (or it was deleted), 4400 a
malformed result, 4408 no result in time (the delivery goes back to the queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from datetime import UTC, datetime
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from dispatch import cli
from dispatch.models import Endpoint
from dispatch.settle import SettleWriter
from live.auth import authenticate

log = logging.getLogger("relay.live")

POLL_SECONDS = 2.0
"""Look for due deliveries at least this often, besides the `NOTIFY` wake-ups and the
next retry's due time."""
DUE_SLACK = 0.05
"""Wake this long after the next retry falls due (the database clock decides; never
spin faster than this)."""
MAX_CLIENT_MESSAGE = 64 * 1024
CLOSE_BAD_RESULT = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_UNKNOWN = 4404
CLOSE_TOO_SLOW = 4408


class ListenConsumer(AsyncWebsocketConsumer):
    channel_layer_alias = None

    endpoint_id = ""
    handout: cli.Handout | None = None
    _serving: asyncio.Task[None] | None = None
    _settling: asyncio.Task[Any] | None = None

    async def connect(self) -> None:
        self.endpoint_id = self.scope["url_route"]["kwargs"]["endpoint_id"]
        token = await authenticate(self.scope)
        await self.accept()
        if token is None:
            await self._refuse(CLOSE_UNAUTHORIZED, "no valid token: run relay login")
            return
        if token.scope != "admin":
            await self._refuse(CLOSE_FORBIDDEN, "relay listen needs an admin token")
            return
        if not await Endpoint.exists(id=self.endpoint_id, kind=cli.CLI_KIND, deleted_at=None):
            await self._refuse(CLOSE_UNKNOWN, f"no cli endpoint {self.endpoint_id}")
            return
        self.owner = cli.new_owner()
        self.settler: SettleWriter = cli.new_settler(self.owner)
        self.rng = random.Random()
        self.wakeup = asyncio.Event()
        self.results: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        cli.due_watch.add(self.wakeup.set)
        await self._send({"type": "ready", "endpoint_id": self.endpoint_id})
        self._serving = asyncio.get_running_loop().create_task(self._serve())

    async def _refuse(self, code: int, detail: str) -> None:
        await self._send({"type": "error", "detail": detail})
        await self.close(code=code)

    async def _send(self, message: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(message))

    async def _serve(self) -> None:
        try:
            while True:
                self.wakeup.clear()
                try:
                    handout = await cli.hand_out(self.endpoint_id, self.owner)
                except cli.EndpointGone:
                    await self._refuse(CLOSE_UNKNOWN, "the endpoint was deleted")
                    return
                if not isinstance(handout, cli.Handout):
                    wait = POLL_SECONDS
                    if handout is not None:
                        due_in = (handout - datetime.now(UTC)).total_seconds()
                        wait = min(wait, max(due_in, 0.0) + DUE_SLACK)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wakeup.wait(), wait)
                    continue
                if not await self._forward(handout):
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("cli: serving endpoint %s failed", self.endpoint_id)
            await self.close(code=1011)

    async def _forward(self, handout: cli.Handout) -> bool:
        """Hand one delivery to the client and settle its report; False to stop."""
        self.handout = handout
        started_at = datetime.now(UTC)
        await self._send(cli.delivery_message(handout))
        wait = handout.target.timeout + settings.RELAY_LEASE_SECONDS / 2
        try:
            report = await asyncio.wait_for(self.results.get(), wait)
        except TimeoutError:
            await self._refuse(CLOSE_TOO_SLOW, f"no result within {wait:g} s")
            return False
        try:
            result = cli.attempt_result(handout, report, started_at)
        except cli.ListenError as problem:
            await self._refuse(CLOSE_BAD_RESULT, f"bad result: {problem}")
            return False
        # Shielded: a report that arrived is recorded even if the client leaves meanwhile.
        self._settling = asyncio.ensure_future(
            cli.settle(self.settler, handout, result, self.rng))
        settlement = await asyncio.shield(self._settling)
        self._settling = self.handout = None
        next_at = settlement.next_attempt_at
        await self._send({
            "type": "settled", "delivery_id": handout.job.id, "status": settlement.status,
            "attempt": handout.job.attempt,
            "next_attempt_at": next_at.isoformat() if next_at and settlement.applied else None,
        })
        return True

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self._serving is None:
            return
        try:
            if text_data is None or len(text_data) > MAX_CLIENT_MESSAGE:
                raise ValueError("send JSON text frames of at most 64 KiB")
            message = json.loads(text_data)
            if not isinstance(message, dict) or message.get("type") != "result":
                raise ValueError('the only message a client sends is {"type": "result", ...}')
            if self.handout is None or message.get("delivery_id") != self.handout.job.id:
                raise ValueError("a result for a delivery that is not waiting for one")
        except ValueError as problem:
            await self._send({"type": "error", "detail": str(problem)})
            return
        self.results.put_nowait(message)

    async def disconnect(self, code: int) -> None:
        if self._serving is None:
            return
        await cli.due_watch.remove(self.wakeup.set)
        self._serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._serving
        self._serving = None
        if self._settling is not None:
            with contextlib.suppress(Exception):
                await self._settling
                self.handout = None
            self._settling = None
        if self.handout is not None:
            try:
                await cli.give_back(self.owner, self.handout)
            except Exception as exc:  # noqa: BLE001 - the lease expires; nothing is lost
                log.warning("cli: could not hand back delivery %s (%s); it is retried when "
                            "its lease expires", self.handout.job.id, exc)
            self.handout = None
