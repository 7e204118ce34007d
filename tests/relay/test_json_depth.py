"""Bounded-depth JSON parsing shared by ingest rules and endpoint filters (pure)."""

from __future__ import annotations

import pytest

from relay.json_depth import MAX_JSON_DEPTH, TooDeep, loads_bounded, nesting_depth_over


def _lists(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_up_to_the_limit_parses():
    assert loads_bounded(_lists(MAX_JSON_DEPTH)) is not None


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5_000, 200_000])
def test_past_the_limit_is_too_deep(depth):
    with pytest.raises(TooDeep):
        loads_bounded(_lists(depth))


def test_wide_is_not_deep():
    assert len(loads_bounded(b"[" + b"[1]," * 100_000 + b"[2]]")) == 100_001


def test_depth_walk_needs_no_recursion():
    value: list = []
    for _ in range(100_000):
        value = [value]
    assert nesting_depth_over(value, 10)
    assert not nesting_depth_over([[1], {"a": [2]}], 3)
    assert nesting_depth_over([[1], {"a": [2]}], 2)


def test_not_json_is_a_value_error():
    with pytest.raises(ValueError):
        loads_bounded(b"\xff{")
