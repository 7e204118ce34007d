"""The in-process cap on kept refused requests: a sliding 60 s window per source (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hooks.store import RejectionLog

MINUTE_EDGE = datetime(2026, 1, 1, 12, 0, 59, 500000, tzinfo=UTC)


def test_at_most_60_in_any_minute_even_across_a_minute_boundary():
    log = RejectionLog()
    moments = [MINUTE_EDGE + timedelta(milliseconds=15 * n) for n in range(70)]
    admitted = [log._admit("src_a", moment) for moment in moments]
    assert sum(admitted) == 60
    assert admitted[:60] == [True] * 60


def test_window_slides():
    log = RejectionLog(per_minute=2)
    start = MINUTE_EDGE
    assert log._admit("src_a", start)
    assert log._admit("src_a", start + timedelta(seconds=30))
    assert not log._admit("src_a", start + timedelta(seconds=59))
    assert log._admit("src_a", start + timedelta(seconds=60, milliseconds=1))
    assert not log._admit("src_a", start + timedelta(seconds=61))
    assert log._admit("src_a", start + timedelta(seconds=91))


def test_sources_are_counted_apart():
    log = RejectionLog(per_minute=1)
    assert log._admit("src_a", MINUTE_EDGE)
    assert log._admit("src_b", MINUTE_EDGE)
    assert not log._admit("src_a", MINUTE_EDGE)
