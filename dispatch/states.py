"""The delivery state machine: a delivery's states, their groups, and the allowed moves.

```
            claim                 2xx
 pending ─────────► delivering ─────────► succeeded
    ▲                  │   │ other answer, schedule left
    │                  │   └──────────────────────────► retrying ──claim──► delivering
    │                  │ schedule ran out / 410                ▲
    │                  └─────────────────────► failed          │ lease expired, handed back
    │                                                          │
    └─ retry, recover (from any state but delivering and cancelled)  └─ (from delivering)
 endpoint deleted: pending, retrying, delivering ──► cancelled
```

Every SQL statement that names a state takes it from here (f-strings with these
constants), so the names live in one place; `tests/dispatch/test_states.py` fails on a
state written as a bare literal in a SQL string. The migrations keep their literals: they
are history, and the partial index `delivery_due_idx` they create is on `WAITING`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

PENDING: Final = "pending"
"""Created (routed, replayed) or put back by hand; waiting for its first attempt."""
DELIVERING: Final = "delivering"
"""Claimed by a dispatcher, under a lease; a request is in flight."""
RETRYING: Final = "retrying"
"""An attempt failed and the schedule has another step; waiting for `next_attempt_at`."""
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
"""The retry schedule ran out (or the endpoint answered 410 Gone)."""
CANCELLED: Final = "cancelled"
"""Its endpoint was deleted before it finished."""

ALL: Final = (PENDING, DELIVERING, RETRYING, SUCCEEDED, FAILED, CANCELLED)

WAITING: Final = (PENDING, RETRYING)
"""Waiting for an attempt. A waiting delivery is *due* once `next_attempt_at <= now()`
(a NULL `next_attempt_at` parks it: its endpoint is disabled or its circuit is open)."""

ACTIVE: Final = (PENDING, RETRYING, DELIVERING)
"""Not finished: waiting or in flight. Retention keeps an event while any of its
deliveries is active; deleting an endpoint cancels its active deliveries."""

FINAL: Final = (SUCCEEDED, FAILED, CANCELLED)
"""Finished: no dispatcher will touch it again unless it is retried or recovered by hand."""

TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    PENDING: frozenset({DELIVERING, CANCELLED, PENDING}),
    RETRYING: frozenset({DELIVERING, CANCELLED, PENDING}),
    DELIVERING: frozenset({SUCCEEDED, RETRYING, FAILED, PENDING, CANCELLED}),
    SUCCEEDED: frozenset({PENDING}),
    FAILED: frozenset({PENDING}),
    CANCELLED: frozenset(),
}
"""Which state may follow which. Back to `pending` from a final state is a retry or a
recover by hand; `delivering` goes back to `pending` or `retrying` when a dispatcher hands
a claimed delivery back unsent (shutdown, or a lease that expired). A cancelled delivery
stays cancelled: its endpoint is gone."""


def can_move(current: str, new: str) -> bool:
    """True when a delivery in state `current` may be moved to `new`."""
    return new in TRANSITIONS.get(current, frozenset())


def sql(state: str) -> str:
    """One state as a SQL literal: `'pending'`."""
    if state not in ALL:
        raise ValueError(f"not a delivery state: {state!r}")
    return f"'{state}'"


def sql_list(states: Iterable[str]) -> str:
    """States as a SQL list for `IN`: `('pending', 'retrying')`."""
    return "(" + ", ".join(sql(state) for state in states) + ")"


WAITING_SQL: Final = sql_list(WAITING)
ACTIVE_SQL: Final = sql_list(ACTIVE)
