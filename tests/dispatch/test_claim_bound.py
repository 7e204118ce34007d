"""A claim asks for no more rows than the endpoints' gates could still admit, so a
dispatcher whose endpoints are at their `max_in_flight` does not lock hundreds of due rows
each time one delivery finishes, to lease one or two."""

from __future__ import annotations

import time

from dispatch.endpoints import Subscription
from dispatch.worker import Dispatcher


def test_a_claim_is_bounded_by_what_the_gates_admit():
    dispatcher = Dispatcher()
    assert dispatcher._leasable(100) == 100  # endpoints not known yet
    dispatcher.router.subscriptions.items = [
        Subscription("ep_a", [], [], None, max_in_flight=10),
        Subscription("ep_b", [], [], None, max_in_flight=5),
        Subscription("ep_cli", [], [], None, max_in_flight=1, pulled=True),
    ]
    gate = dispatcher.gates.gate("ep_a", 10, None)
    for _ in range(8):
        assert gate.try_acquire(time.monotonic())
    assert dispatcher._leasable(100) == 2 + 5  # ep_a's gate, ep_b's max; never the cli one
    assert dispatcher._leasable(3) == 3
    for _ in range(2):
        assert gate.try_acquire(time.monotonic())
    dispatcher.claims_out.append((5, None))  # a claim out may take ep_b's five
    assert dispatcher._leasable(100) == 0
