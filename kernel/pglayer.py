"""A Channels layer over PostgreSQL's LISTEN/NOTIFY, for the live stream without Redis.

`runrelay` runs dispatchers and web workers as separate processes; the live messages a
dispatcher publishes must reach the dashboards connected to any web worker. Channels'
in-memory layer stays inside one process, and Relay already has PostgreSQL, so this layer
sends each `group_send` as a `NOTIFY` on one channel and every process that has a group
member `LISTEN`s on a connection of its own and hands the message to its members.

Only what the live stream uses is here: groups, `new_channel`, `receive`, `flush`.
Messages go as JSON (a message JSON cannot carry raises TypeError, as msgpack does in
channels-redis). A NOTIFY payload holds at most 8,000 bytes: a live batch
(`{"type": "batch", "items": [...]}`) larger than that is split into several payloads,
sent in one statement (so in order); an item that alone is too large is dropped and
counted in the next payload's `dropped`. The bus sends one batch per 20 ms, so this costs
PostgreSQL a few small transactions a second, not one per delivery.

Nobody watching, nothing sent: most of the time no dashboard is open, and every NOTIFY
commits through a cluster-wide lock and wakes every listening connection (the
dispatchers' wake-up listeners among them). The LISTEN connections carry the
application name `LISTENER_NAME`, and a sender asks `pg_stat_activity` at most once per
`AUDIENCE_TTL` whether one is connected. While none is, messages are held rather than
sent; the next check sends them if a listener has come (it was connected, hence about to
listen, before they were published) and drops them otherwise (nobody could have got
them). So a dashboard that joins misses nothing published after it joined, and a message
waits at most `AUDIENCE_TTL` when it is the first one a new listener gets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

import asyncpg
import orjson
from channels.layers import BaseChannelLayer

log = logging.getLogger("relay.live")

NOTIFY_CHANNEL = "relay_live"
PAYLOAD_LIMIT = 7900
"""Bytes per NOTIFY payload: PostgreSQL's limit is 8,000."""
RETRY_INTERVAL = 1.0
LISTEN_WAIT = 2.0
"""`group_add` waits at most this long for the LISTEN connection (then it keeps trying)."""
_SEND = "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload"
LISTENER_NAME = "relay live listener"
"""`application_name` of the LISTEN connections: how senders know that someone listens."""
AUDIENCE_TTL = 1.0
"""Seconds a sender goes on its last answer to "is anyone listening?"."""
HELD_LIMIT = 1_000
"""Messages held at most while the answer is "nobody" (the oldest go first)."""
_AUDIENCE = """
SELECT EXISTS (SELECT 1 FROM pg_stat_activity
               WHERE datname = current_database() AND application_name = $1)
"""


def _encode(group: str, message: dict[str, Any]) -> bytes:
    return orjson.dumps({"g": group, "m": message})


def _checked(message: dict[str, Any]) -> None:
    """Raise TypeError now for a message JSON cannot carry, as encoding it would later
    (messages are held unencoded while nobody listens): the sender's fallback
    (kernel.bus) turns such values into text and sends again."""
    _encode("", message)


def payloads(group: str, message: dict[str, Any], limit: int = PAYLOAD_LIMIT) -> list[str]:
    """`message` for `group` as NOTIFY payloads of at most `limit` bytes each.

    A live batch is split between its items; anything else that does not fit is dropped
    (an empty list), as a full channel layer drops messages.
    """
    whole = _encode(group, message)
    if len(whole) <= limit:
        return [whole.decode()]
    inner = message.get("message")
    if not isinstance(inner, dict) or inner.get("type") != "batch":
        return []
    return [_encode(group, {**message, "message": part}).decode()
            for part in _split_batch(group, message, inner, limit)]


def _split_batch(group: str, envelope: dict[str, Any], batch: dict[str, Any],
                 limit: int) -> Iterator[dict[str, Any]]:
    overhead = len(_encode(group, {**envelope, "message": {"type": "batch", "items": [],
                                                          "dropped": 10 ** 9}}))
    dropped = int(batch.get("dropped") or 0)
    items: list[Any] = []
    size = overhead
    for item in batch.get("items") or ():
        item_size = len(orjson.dumps(item)) + 1
        if overhead + item_size > limit:
            dropped += 1
            continue
        if size + item_size > limit:
            yield _batch(items, dropped)
            items, size, dropped = [], overhead, 0
        items.append(item)
        size += item_size
    if items or dropped:
        yield _batch(items, dropped)


def _batch(items: list[Any], dropped: int) -> dict[str, Any]:
    batch: dict[str, Any] = {"type": "batch", "items": items}
    if dropped:
        batch["dropped"] = dropped
    return batch


class PostgresChannelLayer(BaseChannelLayer):
    extensions = ["groups", "flush"]

    def __init__(self, expiry: int = 86400, capacity: int = 1000,
                 channel_capacity: dict[str, int] | None = None,
                 notify_channel: str = NOTIFY_CHANNEL, **kwargs: Any) -> None:
        super().__init__(expiry=expiry, capacity=capacity, channel_capacity=channel_capacity)
        self.notify_channel = notify_channel
        self._queues: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self.groups: dict[str, set[str]] = {}
        self._sender: asyncpg.Connection | None = None
        self._sender_lock: asyncio.Lock | None = None
        self._sender_loop: asyncio.AbstractEventLoop | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()
        """Set while the LISTEN connection is up (tests wait for it)."""
        self._audience = False
        self._audience_until = 0.0
        self._held: deque[tuple[str, dict[str, Any]]] = deque(maxlen=HELD_LIMIT)
        """(group, message) sent while the last answer was "nobody listens": encoded
        only if someone does by the next check (most of the time nobody does)."""
        self._recheck: asyncio.TimerHandle | None = None
        self.notified = 0
        """Payloads sent as NOTIFY so far (held ones count once they are sent)."""

    # --- sending ---------------------------------------------------------------------------

    async def _connect(self, application_name: str | None = None) -> asyncpg.Connection:
        from kernel.database import connection_params, database_url

        settings = {"application_name": application_name} if application_name else None
        return await asyncpg.connect(**connection_params(database_url()),
                                     server_settings=settings, timeout=5)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert self.require_valid_group_name(group)
        loop = asyncio.get_running_loop()
        if self._sender_lock is None or self._sender_loop is not loop:
            # A connection belongs to one event loop (tests and commands start new ones).
            self._sender_lock, self._sender, self._sender_loop = asyncio.Lock(), None, loop
            self._audience_until, self._recheck = 0.0, None
            self._held.clear()
        async with self._sender_lock:
            if not self.groups and not self._audience:
                _checked(message)  # otherwise `payloads` raises below, before anything is held
            self._held.append((group, message))
            await self._send_held(loop)

    async def _send_held(self, loop: asyncio.AbstractEventLoop) -> None:
        """Send the held messages if someone listens; hold them until the next check if
        the last answer was "nobody"; drop them if a fresh check says so. Under the lock."""
        fresh = False
        try:
            if self.groups:
                self._audience = True
            elif loop.time() >= self._audience_until:
                self._audience = await self._query(lambda sender: sender.fetchval(
                    _AUDIENCE, LISTENER_NAME))
                self._audience_until = loop.time() + AUDIENCE_TTL
                fresh = True
            if self._audience:
                held = list(self._held)
                self._held.clear()
                texts = [text for group, message in held for text in payloads(group, message)]
                if not texts:
                    return
                await self._query(lambda sender: sender.execute(
                    _SEND, self.notify_channel, texts))
                self.notified += len(texts)
            elif fresh:
                self._held.clear()
            elif self._recheck is None:
                self._recheck = loop.call_at(self._audience_until, self._check_again, loop)
        except BaseException:
            self._held.clear()
            raise

    def _check_again(self, loop: asyncio.AbstractEventLoop) -> None:
        self._recheck = None
        if self._held:
            loop.create_task(self._send_held_later(loop), name="relay-live-recheck")

    async def _send_held_later(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._sender_lock is not None
        async with self._sender_lock:
            if not self._held or self._sender_loop is not loop:
                return
            try:
                await self._send_held(loop)
            except Exception as exc:  # noqa: BLE001 - the live view is best-effort
                log.debug("live: held messages not sent: %s", exc)

    async def _query(self, run: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
        if self._sender is None or self._sender.is_closed():
            self._sender = await self._connect()
        try:
            return await run(self._sender)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            connection, self._sender = self._sender, None
            with contextlib.suppress(Exception):
                connection.terminate()
            raise

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Only to this process's channels (the live stream never sends to one channel)."""
        assert self.require_valid_channel_name(channel)
        queue = self._queues.get(channel)
        if queue is not None and not queue.full():
            queue.put_nowait(message)

    # --- receiving --------------------------------------------------------------------------

    async def new_channel(self, prefix: str = "specific.") -> str:
        channel = f"{prefix}{secrets.token_hex(8)}"
        self._queues[channel] = asyncio.Queue(maxsize=self.capacity)
        return channel

    async def receive(self, channel: str) -> dict[str, Any]:
        assert self.require_valid_channel_name(channel)
        queue = self._queues.setdefault(channel, asyncio.Queue(maxsize=self.capacity))
        return await queue.get()

    async def group_add(self, group: str, channel: str) -> None:
        assert self.require_valid_group_name(group)
        assert self.require_valid_channel_name(channel)
        self.groups.setdefault(group, set()).add(channel)
        self._queues.setdefault(channel, asyncio.Queue(maxsize=self.capacity))
        if self._listen_task is None or self._listen_task.done():
            self._listen_task = asyncio.get_running_loop().create_task(
                self._listen(), name="relay-live-listen")
        # Joined means listening: what is sent from now on arrives.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.listening.wait(), LISTEN_WAIT)

    async def group_discard(self, group: str, channel: str) -> None:
        members = self.groups.get(group)
        if members is not None:
            members.discard(channel)
            if not members:
                del self.groups[group]
        self._queues.pop(channel, None)
        if not self.groups:
            await self._stop_listening()

    async def flush(self) -> None:
        self.groups.clear()
        self._queues.clear()
        await self._stop_listening()

    async def close(self) -> None:
        await self.flush()
        if self._recheck is not None:
            self._recheck.cancel()
            self._recheck = None
        self._held.clear()
        if self._sender is not None:
            with contextlib.suppress(Exception):
                await self._sender.close()
            self._sender = None

    async def _stop_listening(self) -> None:
        task, self._listen_task = self._listen_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _deliver(self, _connection: object, _pid: int, _channel: str, payload: object) -> None:
        try:
            data = orjson.loads(cast(str, payload))
            members = self.groups.get(data["g"], ())
            message = data["m"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("live: ignored a malformed notification on %s", self.notify_channel)
            return
        for channel in members:
            queue = self._queues.get(channel)
            if queue is not None and not queue.full():
                queue.put_nowait(message)

    async def _listen(self) -> None:
        """Keep one LISTEN connection while this process has group members."""
        warned = False
        while True:
            lost = asyncio.Event()
            connection: asyncpg.Connection | None = None
            try:
                connection = await self._connect(LISTENER_NAME)
                connection.add_termination_listener(lambda _connection, lost=lost: lost.set())
                await connection.add_listener(self.notify_channel, self._deliver)
                if warned:
                    log.info("live: listening for live messages in PostgreSQL again")
                    warned = False
                self.listening.set()
                await lost.wait()
                raise ConnectionError("the LISTEN connection was closed")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep trying; the stream resumes
                if not warned:
                    log.warning("live: cannot listen for live messages in PostgreSQL "
                                "(%s: %s); retrying", type(exc).__name__, exc)
                    warned = True
                await asyncio.sleep(RETRY_INTERVAL)
            finally:
                self.listening.clear()
                if connection is not None and not connection.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(connection.close(), 2.0)
