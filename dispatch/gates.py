"""Per-endpoint admission in one dispatcher process: at most `max_in_flight` requests at a
time and at most `rate_limit_per_second` (a token bucket holding a tenth of a second's
worth, at least one: requests are paced evenly, not sent in bursts of a second's worth).

Admission happens when deliveries are claimed, not while they wait to be sent: the claim
takes at most what each endpoint's gate would admit (`allowances`; an endpoint without a
gate yet at most its `max_in_flight`), a delivery the gate still refuses goes straight
back to the queue, and an endpoint that can take nothing is left out of the next claim,
so one slow or throttled endpoint never holds the process's slots.

Deliveries the routing dispatcher makes for a full gate may wait in a short line instead
(`Gate.try_wait`, `Gates.line_limit`), sized by the endpoint's pace (how many of its
sends end per second): they hold no slot, only their place. A full gate whose sends have
stopped ending (`Gates.silent`) marks an endpoint that no longer answers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

BURST_SECONDS = 0.1

SILENT_AFTER = 1.0
"""Seconds a full gate may go without a send ending before its endpoint counts as silent."""

LINE_FACTOR = 10
"""An endpoint that keeps answering may have this many times its `max_in_flight` waiting
in line, as many as it answers in half its timeout."""


@dataclass
class Pace:
    """How many sends to one endpoint ended per second, over the last full second."""

    window_start: float
    ended: int = 0
    per_second: float = 0.0

    def note(self, now: float) -> None:
        if now - self.window_start >= 1.0:
            self.per_second = self.ended / (now - self.window_start)
            self.window_start, self.ended = now, 0
        self.ended += 1

    def current(self, now: float) -> float:
        """Zero once nothing has ended for a while: an endpoint that stopped answering
        has no pace."""
        return self.per_second if now - self.window_start < 2.0 else 0.0


@dataclass
class Gate:
    max_in_flight: int
    rate: float | None
    in_flight: int = 0
    tokens: float = 0.0
    refilled_at: float = -math.inf
    waiting: int = 0
    progress_at: float = -math.inf
    """When a send last ended, or the first one of this busy spell started."""
    """Deliveries this process holds that wait for the next free place (`try_wait`)."""

    def _refill(self, now: float) -> None:
        if self.rate is None:
            return
        capacity = max(1.0, self.rate * BURST_SECONDS)
        if self.refilled_at == -math.inf:
            self.tokens = capacity
        else:
            self.tokens = min(capacity, self.tokens + (now - self.refilled_at) * self.rate)
        self.refilled_at = now

    def try_acquire(self, now: float) -> bool:
        if self.in_flight >= self.max_in_flight:
            return False
        self._refill(now)
        if self.rate is not None:
            if self.tokens < 1.0:
                return False
            self.tokens -= 1.0
        if self.in_flight == 0:
            self.progress_at = now
        self.in_flight += 1
        return True

    def release(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)

    def try_wait(self, limit: int) -> bool:
        """Take a place in the line for the next free place, if fewer than `limit` wait
        (see `Gates.line_limit`). Only when it is full and not rate limited: a token
        comes at a time, not when a send ends."""
        if (self.rate is not None or self.in_flight < self.max_in_flight
                or self.waiting >= limit):
            return False
        self.waiting += 1
        return True

    def allowance(self, now: float) -> int:
        """How many more requests it would admit right now (tokens are not taken)."""
        free = self.max_in_flight - self.in_flight - self.waiting
        if free <= 0:
            return 0
        self._refill(now)
        return free if self.rate is None else min(free, int(self.tokens))

    def ready_at(self, now: float) -> float:
        """When this gate could admit again: now, a time in the future (waiting for a
        token), or infinity (waiting for a request in flight to finish)."""
        if self.in_flight + self.waiting >= self.max_in_flight:
            return math.inf
        self._refill(now)
        if self.rate is None or self.tokens >= 1.0:
            return now
        return now + (1.0 - self.tokens) / self.rate


class Gates:
    def __init__(self) -> None:
        self._gates: dict[str, Gate] = {}
        self._paces: dict[str, Pace] = {}
        """Kept when an idle gate is dropped: a pace outlives the moments nothing is in
        flight. One small record per endpoint sent to."""

    def gate(self, endpoint_id: str, max_in_flight: int, rate: float | None) -> Gate:
        gate = self._gates.get(endpoint_id)
        if gate is None:
            gate = self._gates[endpoint_id] = Gate(max_in_flight, rate)
        else:
            gate.max_in_flight, gate.rate = max_in_flight, rate
        return gate

    def get(self, endpoint_id: str) -> Gate | None:
        return self._gates.get(endpoint_id)

    def release(self, endpoint_id: str, ended_at: float | None = None) -> None:
        """A place is free again: a send ended at `ended_at` (its pace counts it), or
        a place held for one was not used (None)."""
        gate = self._gates.get(endpoint_id)
        if gate is not None:
            gate.release()
            self._forget_idle(endpoint_id, gate)
        if ended_at is not None:
            if gate is not None:
                gate.progress_at = ended_at
            pace = self._paces.get(endpoint_id)
            if pace is None:
                pace = self._paces[endpoint_id] = Pace(ended_at)
            pace.note(ended_at)

    def silent(self, endpoint_id: str, now: float) -> bool:
        """The endpoint's gate is full and none of its sends has ended for SILENT_AFTER
        seconds: it has stopped answering (or answers that slowly)."""
        gate = self._gates.get(endpoint_id)
        return (gate is not None and gate.in_flight >= gate.max_in_flight
                and now - gate.progress_at >= SILENT_AFTER)

    def line_limit(self, endpoint_id: str, max_in_flight: int, timeout: float,
                   now: float) -> int:
        """How many deliveries may wait in line for the endpoint's full gate: what it
        answers in half its timeout (each must start within one timeout, or its lease
        would not cover the send), at least its `max_in_flight` and at most
        LINE_FACTOR times it. An endpoint that answers nothing (a black hole) gets its
        `max_in_flight`: never more waiting than it can have in flight."""
        pace = self._paces.get(endpoint_id)
        answered = 0 if pace is None else int(pace.current(now) * timeout / 2)
        return max(max_in_flight, min(LINE_FACTOR * max_in_flight, answered))

    def stop_waiting(self, endpoint_id: str) -> None:
        """A place in the line (`Gate.try_wait`) is given up or turned into a send."""
        gate = self._gates.get(endpoint_id)
        if gate is not None:
            gate.waiting = max(0, gate.waiting - 1)
            self._forget_idle(endpoint_id, gate)

    def _forget_idle(self, endpoint_id: str, gate: Gate) -> None:
        if gate.in_flight == 0 and gate.waiting == 0 and gate.rate is None:
            del self._gates[endpoint_id]

    def allowances(self, now: float, below: float) -> dict[str, int]:
        """Endpoint → requests its gate would admit now, for the gates that would admit
        fewer than `below` (the others do not limit a claim of `below` rows)."""
        allowed = {endpoint_id: gate.allowance(now) for endpoint_id, gate in self._gates.items()}
        return {endpoint_id: n for endpoint_id, n in allowed.items() if n < below}

    def blocked(self, now: float) -> list[str]:
        """Endpoints that cannot take another request now: leave them out of the claim."""
        return [endpoint_id for endpoint_id, gate in self._gates.items()
                if gate.ready_at(now) > now]

    def next_ready_at(self, now: float) -> float:
        """The earliest time a token-starved gate can admit again (infinity if none)."""
        times = [gate.ready_at(now) for gate in self._gates.values()]
        return min((t for t in times if t > now), default=math.inf)


def shared_allowances(allowances: Mapping[str, int],
                      claims_out: Sequence[tuple[int, Mapping[str, int] | None]],
                      ) -> tuple[dict[str, int], int]:
    """What a claim may take of each gated endpoint while `claims_out` (rows asked for,
    their allowances or None) wait for the database: the gate's allowance less what each
    of them may still take of it (its allowance for the endpoint, else as much as the
    gate admits, at most its rows). Also how many rows they may take of an endpoint
    without a gate: all of theirs."""
    reserved = sum(limit for limit, _ in claims_out)
    left = {}
    for endpoint_id, allowed in allowances.items():
        taken = sum(min(allowed if theirs is None else theirs.get(endpoint_id, allowed), limit)
                    for limit, theirs in claims_out)
        left[endpoint_id] = max(0, allowed - taken)
    return left, reserved
