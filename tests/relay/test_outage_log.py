"""The outage log: the first refusal is logged, the rest of a burst only counted."""

from __future__ import annotations

import logging

from kernel.outage import OutageLog


def test_a_burst_of_refusals_is_one_line_then_a_count(caplog, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("kernel.outage.time.monotonic", lambda: clock[0])
    outage = OutageLog(every=30)
    with caplog.at_level(logging.WARNING, logger="relay.outage"):
        assert outage.note("/in/a", ConnectionRefusedError("refused"))
        assert not any(outage.note("/in/a", None) for _ in range(99))
        clock[0] += 30
        assert outage.note("/in/b", None)
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("database unavailable: 1 request(s) answered 503")
    assert "ConnectionRefusedError: refused" in messages[0]
    assert messages[1].startswith("database unavailable: 100 request(s) answered 503")
    assert "/in/b" in messages[1]
