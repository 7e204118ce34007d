"""An attempt's headers become JSON text for its `jsonb` columns."""

from __future__ import annotations

import json

from dispatch.settle import headers_json


def test_headers_round_trip_through_json() -> None:
    headers = {"content-type": "application/json", "x-name": "Zoë ☃", "x-empty": ""}
    assert json.loads(headers_json(headers)) == headers


def test_a_lone_surrogate_falls_back_to_the_standard_encoder() -> None:
    headers = {"x-odd": "caf\udce9"}  # a byte decoded with surrogateescape
    text = headers_json(headers)
    assert text == json.dumps(headers)
    assert json.loads(text) == headers
