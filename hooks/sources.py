"""What ingest needs to know about a source, cached in-process for a moment.

The ingest path would otherwise pay a database round trip per request just to read a
row that changes rarely. Changes made through this process's API take effect at once;
changes made in another process within RELAY_SOURCE_CACHE_SECONDS (default 2 s).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.conf import settings

from hooks.models import Source
from hooks.rules import DEFAULT_DEDUP, DEFAULT_EVENT_TYPE, effective_rule
from hooks.verify import Verification
from kernel.crypto import decrypt_secret


@dataclass(frozen=True)
class IngestSource:
    id: str
    slug: str
    enabled: bool
    max_body_bytes: int
    verification: Verification
    secret: str
    dedup: Mapping[str, str] | None
    event_type: Mapping[str, str] | None


MAX_SLUG_LENGTH = 100
_cache: dict[str, tuple[float, IngestSource | None]] = {}
_CACHE_LIMIT = 10_000
_loading: dict[str, asyncio.Task[IngestSource | None]] = {}
_generation = 0
"""Bumped by forget_source: a lookup that began before it does not fill the cache."""


def verification_from_row(stored: dict[str, Any]) -> Verification:
    known = {key: value for key, value in stored.items()
             if key in Verification.__dataclass_fields__ and value is not None}
    return Verification(**known)


def ingest_source_from_row(row: Source) -> IngestSource:
    verification = verification_from_row(row.verification)
    return IngestSource(
        id=row.id,
        slug=row.slug,
        enabled=row.enabled,
        max_body_bytes=row.max_body_bytes or settings.RELAY_MAX_BODY_BYTES,
        verification=verification,
        secret=decrypt_secret(row.secret_encrypted) if row.secret_encrypted else "",
        dedup=effective_rule(row.dedup, verification.kind, DEFAULT_DEDUP),
        event_type=effective_rule(row.event_type_rule, verification.kind, DEFAULT_EVENT_TYPE),
    )


async def get_ingest_source(slug: str) -> IngestSource | None:
    """The source for `slug`, or None when there is none. Database errors propagate.

    When the cached entry has expired, concurrent requests for the same slug share one
    query instead of each sending its own.
    """
    if len(slug) > MAX_SLUG_LENGTH or "\x00" in slug:
        return None  # no source can have it (the column could not even be queried with it)
    cached = _cache.get(slug)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    loop = asyncio.get_running_loop()
    loading = _loading.get(slug)
    if loading is None or loading.get_loop() is not loop:
        loading = loop.create_task(_load(slug), context=contextvars.Context())
        _loading[slug] = loading
        loading.add_done_callback(partial(_loaded, slug))
    return await asyncio.shield(loading)


async def _load(slug: str) -> IngestSource | None:
    generation = _generation
    started = time.monotonic()
    row = await Source.get_or_none(slug=slug)
    source = ingest_source_from_row(row) if row is not None else None
    if generation == _generation:  # not forgotten meanwhile: the row read is current
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
        _cache[slug] = (started + settings.RELAY_SOURCE_CACHE_SECONDS, source)
    return source


def _loaded(slug: str, loading: asyncio.Task[IngestSource | None]) -> None:
    if _loading.get(slug) is loading:
        del _loading[slug]
    if not loading.cancelled():
        loading.exception()  # retrieved here too, in case every caller was cancelled


def forget_source(*slugs: str) -> None:
    global _generation
    _generation += 1
    for slug in slugs:
        _cache.pop(slug, None)
        _loading.pop(slug, None)


async def ingest_body_limit(slug: str) -> int:
    """The body limit for `/in/<slug>`; the global limit when the source is unknown or the
    database cannot say (the view then answers 404 or 503 itself)."""
    try:
        source = await get_ingest_source(slug)
    except Exception:  # noqa: BLE001 - the view reports database trouble properly
        return int(settings.RELAY_MAX_BODY_BYTES)
    return source.max_body_bytes if source is not None else int(settings.RELAY_MAX_BODY_BYTES)
