"""Work started by hand (API or command line): test events, replays, retries, recovery,
and endpoint state changes. Each is one transaction that ends with a `NOTIFY` so every
dispatcher picks the new work up at once."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

from dispatch import queue
from dispatch.endpoints import Subscriptions
from dispatch.queue import pooled
from dispatch.rollups import COUNT_ROUTED_EVENTS
from kernel.bus import publish
from kernel.filters import endpoint_wants, parse_document
from kernel.ids import new_id

TEST_EVENT_TYPE = "relay.test"
API_DISABLED_REASON = "disabled through the API"


_BY_HAND = ("disabled from the dashboard", API_DISABLED_REASON)


def disabled_reason(token_name: str, from_dashboard: bool) -> str:
    """Who disabled an endpoint by hand, and from where (shown beside the endpoint)."""
    where = "from the dashboard" if from_dashboard else "through the API"
    return f"disabled {where} by {token_name}"


def disabled_by_hand(reason: str | None) -> bool:
    """Whether a person turned the endpoint off (not Relay, after failures or a 410)."""
    return reason is not None and reason.startswith(_BY_HAND)

_INSERT_ROUTED_EVENT = f"""
WITH marked AS (
    INSERT INTO event (id, source_id, source_slug, event_type, dedup_key, received_at, method,
                       query, headers, content_type, size, body)
    VALUES ($1, NULL, NULL, $2, NULL, $3, 'POST', '', $4::jsonb, 'application/json', $5, $6)
    RETURNING source_slug, received_at
), counted AS ({COUNT_ROUTED_EVENTS})
SELECT 1
"""  # noqa: S608 - constant SQL text
"""Store an event routed at once (the router never sees it), counted in the rollups."""


async def send_test_event(endpoint_id: str) -> tuple[str, str]:
    """Store a `relay.test` event routed to this endpoint only; returns (event, delivery)."""
    event_id = new_id("evt")
    now = datetime.now(UTC)
    body = json.dumps({
        "type": TEST_EVENT_TYPE,
        "timestamp": now.isoformat(),
        "data": {"endpoint_id": endpoint_id,
                 "message": "This is a test event sent by Relay."},
    }, separators=(",", ":")).encode()
    async with pooled() as connection, connection.transaction():
        await connection.execute(_INSERT_ROUTED_EVENT, event_id, TEST_EVENT_TYPE, now,
                                 json.dumps({"content-type": "application/json"}), len(body), body)
        [delivery_id] = await queue.insert_deliveries(connection, [(event_id, endpoint_id)])
        await queue.notify_due(connection)
    publish({"type": "event.received", "event": {
        "id": event_id, "source": None, "event_type": TEST_EVENT_TYPE,
        "received_at": now.isoformat(), "size": len(body)}})
    return event_id, delivery_id


_EVENT_FOR_REPLAY = "SELECT id, event_type, source_slug, body FROM event WHERE id = $1"


async def replay_event(event_id: str, endpoint_id: str | None = None) -> list[str] | None:
    """New deliveries of a stored event: to one endpoint, or to every endpoint that wants
    it now. None when the event does not exist."""
    async with pooled() as connection, connection.transaction():
        event = await connection.fetchrow(_EVENT_FOR_REPLAY, event_id)
        if event is None:
            return None
        if endpoint_id is not None:
            targets = [endpoint_id]
        else:
            subscriptions = await Subscriptions().refresh(connection)
            document = parse_document(bytes(event["body"]))
            targets = [
                sub.id for sub in subscriptions
                if endpoint_wants(sub.event_types, sub.sources, sub.rule, event["event_type"],
                                  event["source_slug"], document)
            ]
        ids = await queue.insert_deliveries(connection, [(event_id, target) for target in targets])
        if ids:
            await queue.notify_due(connection)
    return ids


_EVENTS_FOR_REPLAY = (
    "SELECT id, event_type, source_slug, body FROM event WHERE id = ANY($1::text[]) ORDER BY id"
)
REPLAY_BATCH = 500
"""Events replayed per transaction by a bulk replay."""


async def replay_events(event_ids: list[str], endpoint_id: str | None = None) -> int:
    """Replay many stored events, `REPLAY_BATCH` per transaction (subscriptions read
    once); returns how many deliveries were created."""
    created = 0
    async with pooled() as connection:
        subscriptions = None if endpoint_id else await Subscriptions().refresh(connection)
        for start in range(0, len(event_ids), REPLAY_BATCH):
            async with connection.transaction():
                events = await connection.fetch(_EVENTS_FOR_REPLAY,
                                                event_ids[start:start + REPLAY_BATCH])
                pairs: list[tuple[str, str]] = []
                for event in events:
                    if endpoint_id is not None:
                        pairs.append((event["id"], endpoint_id))
                        continue
                    document = parse_document(bytes(event["body"]))
                    pairs.extend(
                        (event["id"], sub.id) for sub in subscriptions or ()
                        if endpoint_wants(sub.event_types, sub.sources, sub.rule,
                                          event["event_type"], event["source_slug"], document))
                ids = await queue.insert_deliveries(connection, pairs)
                if ids:
                    await queue.notify_due(connection)
                created += len(ids)
    return created


async def retry_delivery(delivery_id: str, endpoint_id: str) -> bool:
    async with pooled() as connection:
        return bool(await queue.requeue(connection, [endpoint_id], [delivery_id]))


async def recover_endpoint(endpoint_id: str, since: datetime, until: datetime | None = None,
                           progress: Callable[[int], None] | None = None) -> int:
    """Put every failed delivery of the endpoint created in [since, until) back to pending."""
    until = until or datetime.now(UTC)
    total = 0
    async with pooled() as connection:
        while True:
            ids = await queue.recover_failed(connection, endpoint_id, since, until)
            if not ids:
                return total
            total += len(ids)
            if progress is not None:
                progress(total)


async def set_endpoint_enabled(endpoint_id: str, enabled: bool,
                               reason: str | None = API_DISABLED_REASON) -> None:
    async with pooled() as connection, connection.transaction():
        if enabled:
            await queue.enable_endpoint(connection, endpoint_id)
            return
        disabled = await queue.disable_endpoint(connection, endpoint_id, reason)
    if disabled:
        publish({"type": "endpoint.disabled",
                 "endpoint": {"id": endpoint_id, "disabled_reason": reason}})


async def delete_endpoint(endpoint_id: str) -> int:
    async with pooled() as connection, connection.transaction():
        return await queue.delete_endpoint(connection, endpoint_id)
