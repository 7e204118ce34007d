"""Pure parts of the engine: per-endpoint gates and what an attempt means for a delivery."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

from dispatch.gates import Gate, Gates
from dispatch.queue import Claimed
from dispatch.sender import AttemptResult
from dispatch.settle import decide

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_gate_caps_requests_in_flight():
    gate = Gate(max_in_flight=2, rate=None)
    assert gate.try_acquire(0.0) and gate.try_acquire(0.0)
    assert not gate.try_acquire(0.0)
    assert gate.ready_at(0.0) == math.inf
    gate.release()
    assert gate.ready_at(0.0) == 0.0 and gate.try_acquire(0.0)


def test_gate_paces_a_rate_limit():
    gate = Gate(max_in_flight=100, rate=4.0)
    assert gate.try_acquire(0.0)
    assert not gate.try_acquire(0.1)
    assert abs(gate.ready_at(0.1) - 0.25) < 1e-9
    assert gate.try_acquire(0.25)
    admitted = sum(gate.try_acquire(t / 100) for t in range(26, 126))
    assert admitted == 4


def test_gates_report_blocked_endpoints_and_forget_idle_ones():
    gates = Gates()
    assert gates.gate("ep_a", 1, None).try_acquire(0.0)
    assert gates.gate("ep_b", 5, 1.0).try_acquire(0.0)
    assert sorted(gates.blocked(0.0)) == ["ep_a", "ep_b"]
    assert gates.next_ready_at(0.0) == 1.0
    gates.release("ep_a")
    assert gates.blocked(0.0) == ["ep_b"]
    assert gates.blocked(1.0) == []


def test_a_full_gate_lets_a_bounded_line_wait_and_claims_count_it():
    gate = Gate(max_in_flight=2, rate=None)
    assert not gate.try_wait(2)  # not full: send, do not wait
    assert gate.try_acquire(0.0) and gate.try_acquire(0.0)
    assert gate.try_wait(2) and gate.try_wait(2) and not gate.try_wait(2)
    gate.release()
    assert gate.allowance(0.0) == 0 and gate.ready_at(0.0) == math.inf  # the line is first
    assert not Gate(max_in_flight=1, rate=5.0).try_wait(10)  # tokens, not sends, pace it


def test_the_line_follows_what_the_endpoint_answers():
    gates = Gates()
    assert gates.line_limit("ep_a", 10, 15.0, 0.0) == 10  # nothing known: its max_in_flight
    for n in range(201):  # 200 answers a second
        gates.release("ep_a", n / 200)
    assert gates.line_limit("ep_a", 10, 15.0, 1.0) == 100  # at most 10 x max_in_flight
    assert gates.line_limit("ep_a", 10, 0.5, 1.0) == 50  # what it answers in half a timeout
    assert gates.line_limit("ep_a", 10, 15.0, 3.5) == 10  # it stopped answering
    gates.release("ep_b")  # a place not used is no answer
    assert gates.line_limit("ep_b", 4, 15.0, 0.5) == 4


def test_a_full_gate_whose_sends_do_not_end_is_silent():
    gates = Gates()
    gate = gates.gate("ep_a", 2, None)
    assert gate.try_acquire(10.0) and gate.try_acquire(10.2)
    assert not gates.silent("ep_a", 10.9)  # full, but not for a second yet
    assert gates.silent("ep_a", 11.0)
    gates.release("ep_a", ended_at=11.5)  # one answered
    assert gate.try_acquire(11.5) and not gates.silent("ep_a", 12.0)
    assert gates.silent("ep_a", 12.5)
    gates.release("ep_a")  # a place not used: no answer, and not full any more
    assert not gates.silent("ep_a", 20.0) and not gates.silent("ep_b", 20.0)


def job(attempt: int = 1, retry_base: int = 0) -> Claimed:
    return Claimed(
        id="dlv_x", event_id="evt_x", endpoint_id="ep_x", attempt=attempt,
        retry_base=retry_base, due_at=NOW, endpoint_exists=True, endpoint_enabled=True,
        endpoint_updated_at=NOW, circuit_opened_at=None, consecutive_failures=0,
        circuit_probe_at=None, event_exists=True, body=b"{}", headers={}, content_type="",
        event_type=None, source_slug=None)


def answered(status: int | None, **headers: str) -> AttemptResult:
    return AttemptResult(started_at=NOW, duration_ms=1.0, request_headers={},
                         status_code=status, response_headers=headers,
                         error=None if status else "connect")


def test_decide():
    rng = random.Random(1)
    ok = decide(job(), answered(204), [1.0], NOW, rng)
    assert (ok.status, ok.completed_at, ok.success) == ("succeeded", NOW, True)

    retry = decide(job(), answered(None), [10.0], NOW, rng)
    assert retry.status == "retrying" and not retry.success
    assert timedelta(seconds=8) <= retry.next_attempt_at - NOW <= timedelta(seconds=12)

    assert decide(job(attempt=2), answered(500), [10.0], NOW, rng).status == "failed"
    # After a manual retry (retry_base 2) the schedule starts over.
    again = decide(job(attempt=3, retry_base=2), answered(500), [10.0], NOW, rng)
    assert again.status == "retrying"

    slow = decide(job(), answered(503, **{"retry-after": "15"}), [10.0], NOW, rng)
    assert slow.next_attempt_at - NOW == timedelta(seconds=15)

    gone = decide(job(), answered(410), [1.0], NOW, rng)
    assert gone.gone and gone.status == "retrying"
    assert decide(job(attempt=2), answered(410), [1.0], NOW, rng).status == "failed"
    assert decide(job(), answered(302), [1.0], NOW, rng).status == "retrying"
