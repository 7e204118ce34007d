"""The dispatcher: claim due deliveries → send them → settle the attempts.

`Dispatcher.run_loop` is the whole engine, top to bottom (two claim loops, so a claim
waiting for the database is no gap in sending). Around it run small helpers:
the router (events → deliveries; those this process has room for come back leased to it
and are sent without a claim), the LISTEN connection (wake-ups), the lease sweeper
(deliveries of a dead dispatcher) and the settle writer (batched writes). Policies are
imported pure functions; only the edges do I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import secrets
import socket
import time
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import asyncpg
from django.conf import settings

from dispatch import queue, states
from dispatch.address_policy import parse_allowlist
from dispatch.alerts import AlertEvaluator
from dispatch.delivery_client import DeliveryClient, build_http_client
from dispatch.endpoints import Subscription, Target, Targets, utcnow
from dispatch.gates import Gates, shared_allowances
from dispatch.metrics import record_started
from dispatch.notify.smtp import parse_smtp_url
from dispatch.queue import Claimed, PutBack, pooled
from dispatch.retry import (
    CIRCUIT_COOLDOWN_SECONDS,
    CIRCUIT_FAILURE_THRESHOLD,
    CircuitState,
    circuit_status,
)
from dispatch.routing import SEND_NOW, WAIT_TURN, Router
from dispatch.sender import send
from dispatch.service import beside_jobs
from dispatch.settle import Settlement, SettleWriter, decide
from dispatch.wakeup import Listener
from kernel.database import EVENT_CHANNEL, connection_params, database_url

log = logging.getLogger("relay.dispatch")

CLAIMERS = 2
"""Claims that may wait for the database at once while there is a backlog."""

FULL_WALK_EVERY = 1.0
"""Seconds between claims from the head of the due order while claims start further on
(`Dispatcher.due_from`): how long a delivery left behind (its endpoint's gate was full,
another claim held it, that claim failed) may wait while a backlog drains."""

PROBE_HOLD_SECONDS = 5.0
"""While a half-open circuit's probe is out, the endpoint's other due deliveries wait
this long (at most the cool-down) before they are looked at again."""


UNREADABLE_HOLD_SECONDS = 60.0
"""A delivery whose endpoint's secret cannot be decrypted (RELAY_SECRET_KEY differs from
the key it was stored with) waits this long before it is looked at again."""


def new_owner() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


class Dispatcher:
    def __init__(
        self,
        *,
        concurrency: int | None = None,
        poll_interval: float = 1.0,
        lease_margin: float | None = None,
        shutdown_grace: float | None = None,
        circuit_threshold: int = CIRCUIT_FAILURE_THRESHOLD,
        circuit_cooldown: float = CIRCUIT_COOLDOWN_SECONDS,
        client: DeliveryClient | None = None,
        alert_interval: float | None = None,
    ) -> None:
        self.concurrency = concurrency or settings.RELAY_DISPATCH_CONCURRENCY
        self.poll_interval = poll_interval
        self.lease_margin = settings.RELAY_LEASE_SECONDS if lease_margin is None else lease_margin
        self.shutdown_grace = (settings.RELAY_SHUTDOWN_GRACE if shutdown_grace is None
                               else shutdown_grace)
        self.circuit_cooldown = circuit_cooldown
        self.allowlist = frozenset(parse_allowlist(settings.RELAY_TARGET_ALLOWLIST))
        """Parsed once: every send checks its target against it."""
        self.smtp = parse_smtp_url(settings.RELAY_SMTP_URL) if settings.RELAY_SMTP_URL else None
        self.smtp_from: str = settings.RELAY_SMTP_FROM
        self.version: str = settings.VERSION
        self.owner = new_owner()
        self.client = client
        self.rng = random.Random()
        self.router = Router(taker=self)
        self.targets = Targets()
        self.gates = Gates()
        self.pin_connections = queue.pinning_fits(settings.RELAY_DATABASE_POOL_SIZE)
        """Whether the claimers, the router and the settle writer keep a connection each
        (`queue.Pinned`)."""
        self.settler = SettleWriter(self.owner, circuit_threshold=circuit_threshold,
                                    on_written=self._settled, pin=self.pin_connections)
        self.alerts = AlertEvaluator(settings.RELAY_ALERT_INTERVAL if alert_interval is None
                                     else alert_interval)
        self.wake = asyncio.Event()
        self.route_wake = asyncio.Event()
        self.in_flight: dict[str, tuple[Claimed, asyncio.Task[None]]] = {}
        self.behind: dict[str, deque[tuple[Claimed, Target, float]]] = {}
        """Endpoint id → deliveries routed here that wait for a place in its full gate
        (`Gates.line_limit`: from its `max_in_flight` for one that answers nothing up to
        what it answers in half a timeout), each with the monotonic time by
        which it must start: its lease covers one timeout of waiting and one of sending.
        A burst of events for one endpoint is sent as its requests finish, on the cheap
        path, instead of going through the queue and a claim."""
        self._quiet: set[str] = set()
        """Endpoints the last routing pass found full and silent (`Taker.quiet`)."""
        self.claiming = 0
        """Slots reserved by claims waiting for the database."""
        self.claim_batch = max(1, math.ceil(self.concurrency / CLAIMERS))
        self.backlogged = False
        """The last claim got all it asked for: more is due than there are slots. Then the
        claims overlap, each for at most `claim_batch` slots, so the deliveries of one are
        sent while the other waits for the database; otherwise one claim at a time."""
        self.missed_wake = False
        """A claimer woke while the other's claim was out and left the work to it: that
        one looks again when its claim is back instead of sleeping."""
        self.claims_out: list[tuple[int, dict[str, int] | None]] = []
        """(rows asked for, allowances) of each claim waiting for the database: a claim
        that overlaps them leaves what they may still take of each endpoint, else it
        would lease rows their deliveries are about to fill the gates with, only for the
        gates to hand them back."""
        self.claim_failing = False
        self.due_from: datetime | None = None
        """Where the next claim starts in due order: the due time of the last row a full
        claim leased. A claim from the head walks again every due delivery the claims
        before it left (a full endpoint's backlog, rows other dispatchers hold): that
        walk grew with each claim until the backlog was gone. Rows left behind are
        taken by a claim from the head, made as soon as one from here comes back short
        and at least every FULL_WALK_EVERY seconds."""
        self.walked_all_at = -math.inf
        """The monotonic time of the last claim from the head."""
        self.walk_again = False
        """The last claim started at `due_from` and came back short: the next starts at
        the head at once."""
        self.left_due = True
        """The last claim may have left due deliveries behind (it found some, or the
        limit of an endpoint still answering kept it from looking): a slot that frees up
        wakes a claim. An endpoint that has stopped answering (`Gates.silent`) does not
        count: a claim per finished send would walk past its whole backlog each time. After
        a claim that found nothing, claims wait for news that something is due (a
        notification, routing, a retry time, the poll) instead of one per finished send."""
        self.probing: dict[str, str] = {}
        """Endpoint id → the delivery sent as its circuit's probe, until that settles."""
        self.next_due: datetime | None = None
        self.stopping = False
        self._stopped = asyncio.Event()
        self._routing: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._main: asyncio.Task[None] | None = None

    # --- the loop ------------------------------------------------------------------------

    async def run_loop(self) -> None:
        await asyncio.gather(*(self._claim_loop() for _ in range(CLAIMERS)))

    async def _claim_loop(self) -> None:
        home = queue.Pinned(self.pin_connections)
        try:
            await self._claims(home)
        finally:
            await home.release()

    async def _claims(self, home: queue.Pinned) -> None:
        while not self.stopping:
            self.wake.clear()
            free = self.concurrency - len(self.in_flight) - self.claiming
            if self.backlogged:
                free = min(free, self.claim_batch)
            elif self.claiming:
                free = 0
            claimed_all = False
            if free > 0:
                blocked = self.gates.blocked(time.monotonic())
                allowances, reserved = self._allowances(free, blocked)
                mine = (free, allowances)
                self.claiming += free
                self.claims_out.append(mine)
                try:
                    claimed, jobs = await self.claim(free, allowances, reserved, blocked,
                                                     home)
                    self.claim_failing = False
                except Exception as exc:  # noqa: BLE001 - the database comes back; so do we
                    if not self.claim_failing:
                        log.warning("dispatcher: cannot claim deliveries (%s); retrying", exc)
                        self.claim_failing = True
                    failed = True
                else:
                    failed = False
                self.claiming -= free
                self.claims_out.remove(mine)
                if failed:
                    await self._sleep(min(5.0, self.poll_interval * 2))
                    continue
                for job, target in jobs:
                    self.start_send(job, target)
                claimed_all = self.backlogged = claimed == free
                if self.walk_again:
                    self.walk_again, claimed_all = False, True
                if self.missed_wake:
                    self.missed_wake = False
                    claimed_all = True
            elif self.claiming:
                self.missed_wake = True
            if not claimed_all:
                await self._sleep(self._until_next_work())

    def _room(self) -> int:
        """Slots free for sends, less those claims already out will fill."""
        return 0 if self.stopping else max(
            0, self.concurrency - len(self.in_flight) - self.claiming)

    def _allowances(self, free: int, blocked: Sequence[str] = ()
                    ) -> tuple[dict[str, int] | None, int]:
        """For a claim of `free` rows: what each gated endpoint may take (None when no
        endpoint limits such a claim, see `queue.claim`), and how many rows the claims
        already out may take of any endpoint without a gate. Before any endpoint is
        known (the first claim), every one may limit it.

        Endpoints the claim leaves out (`blocked`: their gate is full) and those resting (circuit
        open, disabled: their backlog is parked) limit nothing: with only those below
        the claim's size, the plain claim runs, which costs about half as much per row
        (a black hole beside a healthy endpoint no longer doubles the healthy one's
        claims)."""
        every = self.gates.allowances(time.monotonic(), below=math.inf)
        left, reserved = shared_allowances(every, self.claims_out)
        left_out = set(blocked)
        allowances = {endpoint_id: n for endpoint_id, n in left.items()
                      if n < free and endpoint_id not in left_out}
        if allowances or self.targets.smallest_max_in_flight(left_out) < free + reserved:
            return allowances, reserved
        return None, reserved

    async def claim(self, free: int, allowances: dict[str, int] | None = None,
                    reserved: int = 0, blocked: list[str] | None = None,
                    home: queue.Pinned | None = None,
                    ) -> tuple[int, list[tuple[Claimed, Target]]]:
        """Lease up to `free` due deliveries (within `allowances`, less `reserved` of each
        endpoint's `max_in_flight`: see `queue.claim`); returns how many were leased and
        those to send now. The rest went straight back: parked, held by a circuit, over a
        gate. On `home`'s connection (a claimer's own), else on one borrowed."""
        async with (home or queue.Pinned(keep=False)).connection() as connection:
            clock = time.monotonic()
            if blocked is None:
                blocked = self.gates.blocked(clock)
            exclude = blocked + sorted(self.probing)
            due_from = self.due_from
            if due_from is None or clock - self.walked_all_at >= FULL_WALK_EVERY:
                due_from, self.walked_all_at = None, clock
            rows, next_due = await queue.claim(
                connection, self.owner, free, exclude, settings.RELAY_DELIVERY_TIMEOUT,
                self.lease_margin, allowances, reserved, self.circuit_cooldown, due_from)
            self.due_from = max(row.due_at for row in rows) if len(rows) == free else None
            self.walk_again = due_from is not None and len(rows) < free
            if len(rows) < free:
                self.next_due = next_due
            limited = blocked + [endpoint_id for endpoint_id, n in (allowances or {}).items()
                                 if n <= 0]
            self.left_due = bool(rows) or any(
                not self.gates.silent(endpoint_id, clock) for endpoint_id in limited)
            if not rows:
                return 0, []
            await self.targets.ensure(connection, {
                row.endpoint_id: row.endpoint_updated_at for row in rows if row.endpoint_exists
            })
            to_send, back, cancelled, orphaned = [], [], [], []
            refused = 0
            now, clock = utcnow(), time.monotonic()
            for job in rows:
                target = self.targets.get(job.endpoint_id)
                self.targets.note_resting(job.endpoint_id, job.circuit_opened_at is not None
                                          or not job.endpoint_enabled)
                if job.endpoint_exists and job.endpoint_id in self.targets.unreadable:
                    back.append(PutBack(job.id, job.endpoint_id,
                                        now + timedelta(seconds=UNREADABLE_HOLD_SECONDS)))
                elif not job.endpoint_exists or target is None:
                    cancelled.append(job.id)
                elif not job.event_exists:
                    orphaned.append(job.id)
                elif not job.endpoint_enabled:
                    back.append(PutBack(job.id, job.endpoint_id, None))
                elif not self.gates.gate(job.endpoint_id, target.max_in_flight,
                                         target.rate_limit).try_acquire(clock):
                    # Due now, not at its old time: claims from a frontier
                    # (`due_from`) would pass over it until the next claim from the head.
                    back.append(PutBack(job.id, job.endpoint_id, now))
                    refused += 1
                else:
                    go, again = await self._circuit_check(connection, job, target, now)
                    if go:
                        to_send.append((job, target))
                    else:
                        self._release(job.endpoint_id)
                        back.append(PutBack(job.id, job.endpoint_id, again))
            await queue.put_back(connection, self.owner, back)
            if refused:
                # Routing filled the gate while this claim was out. Another dispatcher may
                # have room for them now: tell it, or they would wait for its poll.
                self.left_due = True
                await queue.notify_due(connection)
            await queue.finish_unattempted(connection, self.owner, cancelled, states.CANCELLED, None)
            await queue.finish_unattempted(connection, self.owner, orphaned, states.FAILED,
                                           "event_missing")
        record_started("claimed", len(to_send))
        return len(rows), to_send

    async def _circuit_check(self, connection: asyncpg.Connection, job: Claimed,
                             target: Target, now: datetime) -> tuple[bool, datetime | None]:
        """(True, None) when the delivery may go; else (False, when to look at it again),
        None for parked until the circuit closes."""
        state = CircuitState(job.circuit_opened_at, job.consecutive_failures)
        status = circuit_status(state, now, self.circuit_cooldown)
        if status == "closed":
            return True, None
        assert job.circuit_opened_at is not None
        if status == "open":
            return False, None
        if job.endpoint_id not in self.probing and await queue.take_probe(
                connection, job.endpoint_id, job.circuit_opened_at,
                target.timeout + self.lease_margin):
            self.probing[job.endpoint_id] = job.id
            return True, None
        return False, now + timedelta(seconds=min(PROBE_HOLD_SECONDS, self.circuit_cooldown))

    # --- deliveries routed here: sent without a claim (dispatch.routing.Taker) ---------

    async def reserve(self, connection: asyncpg.Connection,
                      subscriptions: Sequence[Subscription],
                      endpoint_ids: Sequence[str]) -> list[int]:
        """For each delivery about to be routed: SEND_NOW with a free slot and the gate's
        admission, WAIT_TURN with a place in the line of its full gate, else 0: left due
        for any dispatcher's claim.

        A claim out while nothing is backlogged holds every free slot but finds little or
        nothing: the slots are not left to it, or a poll would send the next deliveries
        through the queue. Should it come back with rows all the same, the sends in flight
        exceed `concurrency` by those rows until they finish. A delivery waiting its turn
        holds no slot: it takes the one its endpoint's finished send leaves."""
        if self.stopping:
            return [0] * len(endpoint_ids)
        free = (self.concurrency - len(self.in_flight)
                - (self.claiming if self.backlogged else 0))
        wanted = set(endpoint_ids)
        await self.targets.ensure(connection, {
            sub.id: sub.updated_at for sub in subscriptions if sub.id in wanted})
        clock = time.monotonic()
        spans: list[int] = []
        self._quiet = set()
        for endpoint_id in endpoint_ids:
            target = self.targets.get(endpoint_id)
            span = 0
            if (target is not None and target.kind != "cli"
                    and endpoint_id not in self.probing):
                gate = self.gates.gate(endpoint_id, target.max_in_flight, target.rate_limit)
                if free > 0 and gate.try_acquire(clock):
                    span, free = SEND_NOW, free - 1
                elif gate.try_wait(self.gates.line_limit(
                        endpoint_id, target.max_in_flight, target.timeout, clock)):
                    span = WAIT_TURN
                elif gate.rate is None and self.gates.silent(endpoint_id, clock):
                    self._quiet.add(endpoint_id)
            spans.append(span)
        self.claiming += spans.count(SEND_NOW)
        return spans

    def quiet(self) -> list[str]:
        return sorted(self._quiet)

    async def ready(self, connection: asyncpg.Connection,
                    rows: Sequence[asyncpg.Record]) -> list[Claimed]:
        jobs = [queue.claimed_from_row(row) for row in rows]
        await self.targets.ensure(connection, {job.endpoint_id: job.endpoint_updated_at
                                               for job in jobs})
        unreadable = [job for job in jobs if self.targets.get(job.endpoint_id) is None]
        if unreadable:
            later = utcnow() + timedelta(seconds=UNREADABLE_HOLD_SECONDS)
            await queue.put_back(connection, self.owner, [
                PutBack(job.id, job.endpoint_id, later) for job in unreadable])
        return [job for job in jobs if self.targets.get(job.endpoint_id) is not None]

    def taken(self, jobs: Sequence[Claimed], reserved: Mapping[str, tuple[str, int]]) -> None:
        self.claiming -= sum(span == SEND_NOW for _, span in reserved.values())
        left = dict(reserved)
        started = 0
        for job in jobs:
            target = self.targets.get(job.endpoint_id)
            assert target is not None, "ready() kept only jobs with a target"
            _, span = left.pop(job.id)
            if span == SEND_NOW:
                self.start_send(job, target)
                started += 1
            else:
                self.behind.setdefault(job.endpoint_id, deque()).append(
                    (job, target, time.monotonic() + target.timeout))
        record_started("routed", started)
        for endpoint_id, span in left.values():
            if span == SEND_NOW:
                self._release(endpoint_id)
            else:
                self.gates.stop_waiting(endpoint_id)
        for endpoint_id in {job.endpoint_id for job in jobs}:
            self._next_in_line(endpoint_id)
        if left and self.left_due:
            self.wake.set()

    def _release(self, endpoint_id: str, ended_at: float | None = None) -> None:
        """A send to the endpoint ended at `ended_at` (or a place held for one is not
        used): the place goes to the next delivery waiting its turn, if any."""
        self.gates.release(endpoint_id, ended_at)
        self._next_in_line(endpoint_id)

    def _next_in_line(self, endpoint_id: str) -> None:
        """Start the deliveries waiting for the endpoint's gate, as many as it admits.
        One that can no longer start within its lease is left to it: the lease expires
        and the sweep makes it due again, so it is never sent twice at once."""
        line = self.behind.get(endpoint_id)
        if not line or self.stopping:
            return
        clock = time.monotonic()
        while line:
            job, target, start_by = line[0]
            if clock <= start_by:
                gate = self.gates.gate(endpoint_id, target.max_in_flight, target.rate_limit)
                if not gate.try_acquire(clock):
                    break
                self.start_send(job, target)
                record_started("routed", 1)
            line.popleft()
            self.gates.stop_waiting(endpoint_id)
        if not line:
            del self.behind[endpoint_id]

    def start_send(self, job: Claimed, target: Target) -> None:
        task = asyncio.get_running_loop().create_task(self.deliver(job, target),
                                                      name=f"deliver-{job.id}")
        self.in_flight[job.id] = (job, task)

    async def deliver(self, job: Claimed, target: Target) -> None:
        try:
            assert self.client is not None, "deliver() before start()"
            result = await send(self.client, job, target, allowlist=self.allowlist,
                                version=self.version, smtp=self.smtp,
                                smtp_from=self.smtp_from)
        finally:
            self.in_flight.pop(job.id, None)
            self._release(job.endpoint_id, time.monotonic())
            if self.left_due:
                self.wake.set()
        settlement = decide(job, result, target.retry_schedule, utcnow(), self.rng,
                            target.kind)
        settlement.probe = self.probing.get(job.endpoint_id) == job.id
        self.settler.add(settlement)

    def _settled(self, batch: list[Settlement]) -> None:
        self.alerts.note_settled(batch)
        for item in batch:
            self.targets.note_resting(item.job.endpoint_id, item.resting)
            if item.probe:
                self.probing.pop(item.job.endpoint_id, None)
                self.wake.set()
            if item.next_attempt_at is not None and (
                    self.next_due is None or item.next_attempt_at < self.next_due):
                self.next_due = item.next_attempt_at
                self.wake.set()

    def _until_next_work(self) -> float:
        timeout = self.poll_interval
        if self.next_due is not None:
            timeout = min(timeout, (self.next_due - utcnow()).total_seconds())
        clock = time.monotonic()
        ready = self.gates.next_ready_at(clock)
        if ready != math.inf:
            timeout = min(timeout, ready - clock)
        return max(0.0, timeout)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), seconds)

    # --- helpers around the loop ---------------------------------------------------------

    async def route_loop(self) -> None:
        self.router.home = queue.Pinned(self.pin_connections)
        try:
            await self._routes()
        finally:
            home, self.router.home = self.router.home, queue.Pinned(keep=False)
            await home.release()

    async def _routes(self) -> None:
        failing = False
        while not self.stopping:
            self.route_wake.clear()
            try:
                await self.router.route_all()
                if self.router.queued:
                    self.wake.set()
                failing = False
            except Exception as exc:  # noqa: BLE001
                if not failing:
                    log.warning("dispatcher: cannot route events (%s); retrying", exc)
                    failing = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.route_wake.wait(), self.poll_interval)

    async def circuit_loop(self) -> None:
        """Open circuits' upkeep (dispatch.queue.circuit_upkeep): a probe candidate when
        one half-opens, the parked backlog due again when one has closed. Often enough
        that a probe goes out soon after the cool-down; two small reads when idle."""
        interval = max(0.05, min(1.0, self.circuit_cooldown / 10))
        while not self.stopping:
            try:
                async with pooled() as connection:
                    candidates, unparked = await queue.circuit_upkeep(
                        connection, self.circuit_cooldown, settings.RELAY_DELIVERY_TIMEOUT,
                        self.lease_margin)
                if candidates or unparked:
                    self.wake.set()
            except Exception as exc:  # noqa: BLE001
                log.debug("dispatcher: circuit upkeep failed: %s", exc)
            await asyncio.sleep(interval)

    async def sweep_loop(self) -> None:
        interval = max(0.2, min(5.0, self.lease_margin / 2))
        while not self.stopping:
            try:
                async with pooled() as connection:
                    if await queue.sweep_expired_leases(connection):
                        self.wake.set()
            except Exception as exc:  # noqa: BLE001
                log.debug("dispatcher: lease sweep failed: %s", exc)
            await asyncio.sleep(interval)

    # --- start and stop ------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.client is None:
            self.client = build_http_client(
                max_connections=self.concurrency, timeout=settings.RELAY_DELIVERY_TIMEOUT,
                allowlist=self.allowlist)
        listener = Listener(connection_params(database_url()), {
            EVENT_CHANNEL: self.route_wake.set,
            queue.DUE_CHANNEL: self.wake.set,
        })
        self._routing = loop.create_task(self.route_loop(), name="dispatch-route")
        self._tasks = [
            loop.create_task(listener.run(), name="dispatch-listen"),
            self._routing,
            loop.create_task(self.sweep_loop(), name="dispatch-sweep"),
            loop.create_task(self.circuit_loop(), name="dispatch-circuits"),
            loop.create_task(self.settler.run(), name="dispatch-settle"),
            loop.create_task(self.alerts.run(), name="dispatch-alerts"),
            *(job(pooled) for job in beside_jobs()),
        ]
        self._main = loop.create_task(self.run_loop(), name="dispatch-claim")

    async def stop(self) -> None:
        """Stop claiming, give sends in flight `shutdown_grace` seconds to finish, put
        back whatever did not (lease cleared, due now), write every settled attempt."""
        self.stopping = True
        self._stopped.set()
        self.alerts.stopping = True
        self.wake.set()
        self.route_wake.set()
        if self._main is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._main
        # A routing pass under way may still hand this process deliveries: let it end
        # (it reserves nothing more), so that they are among the sends waited for.
        if self._routing is not None:
            await asyncio.wait([self._routing], timeout=self.shutdown_grace)
        pending_tasks = [task for _, task in self.in_flight.values()]
        if pending_tasks:
            await asyncio.wait(pending_tasks, timeout=self.shutdown_grace)
        unfinished = [job for job, _ in self.in_flight.values()]
        unfinished += [job for line in self.behind.values() for job, _, _ in line]
        self.behind.clear()
        for _, task in list(self.in_flight.values()):
            task.cancel()
        if pending_tasks:
            await asyncio.gather(*pending_tasks, return_exceptions=True)
        try:
            async with asyncio.timeout(10):
                await self.settler.drain()
                if unfinished:
                    async with pooled() as connection:
                        now = utcnow()
                        await queue.put_back(connection, self.owner, [
                            PutBack(job.id, job.endpoint_id, now) for job in unfinished])
        except Exception as exc:  # noqa: BLE001 - leases expire; nothing is lost
            log.warning("dispatcher: could not hand back %d deliveries at shutdown (%s); "
                        "they are retried when their leases expire", len(unfinished), exc)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.client is not None:
            await self.client.aclose()

    async def run_until_stopped(self, stop: asyncio.Event) -> None:
        await self.start()
        await stop.wait()
        await self.stop()
