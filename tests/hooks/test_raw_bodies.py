"""Bodies are stored byte for byte, whatever they are: JSON, form data, binary, empty."""

from __future__ import annotations

import base64

import pytest

from hooks.models import Event
from tests.hooks import signing

BINARY = bytes(range(256)) + b"\xff\xfe\x00\x80 not utf-8 \xc3\x28"


@pytest.mark.parametrize(("body", "content_type", "text"), [
    pytest.param(BINARY, "application/octet-stream", None, id="binary"),
    pytest.param("caf\xe9".encode("latin-1"), "text/plain; charset=latin-1", None,
                 id="latin-1-text"),
    pytest.param(b"a=1&b=%20two", "application/x-www-form-urlencoded", "a=1&b=%20two",
                 id="form"),
    pytest.param(b'{ "spaced" :  1 ,"order":[2,1] }\n', "application/json",
                 '{ "spaced" :  1 ,"order":[2,1] }\n', id="json-not-reformatted"),
    pytest.param("\u2603 snow".encode(), "text/plain; charset=utf-8", "\u2603 snow",
                 id="utf-8-text"),
    pytest.param(b"", "", "", id="empty"),
])
async def test_body_is_stored_byte_exact(client, admin, make_source, body, content_type, text):
    await make_source("raw")
    headers = {"content-type": content_type} if content_type else {}
    answer = await client.post("/in/raw", content=body, headers=headers)
    assert answer.status_code == 202, answer.text
    event = (await client.get(f"/api/v1/events/{answer.json()['id']}", headers=admin)).json()
    assert event["body"] == text
    assert base64.b64decode(event["body_base64"]) == body
    assert event["size"] == len(body)
    assert event["content_type"] == content_type
    assert bytes((await Event.get(id=answer.json()["id"])).body) == body


async def test_signed_binary_body_verifies_and_is_kept_exact(client, admin, make_source):
    await make_source("bin", kind="standard_webhooks", secret=signing.STANDARD_SECRET)
    headers = signing.standard_webhooks_raw(signing.STANDARD_SECRET, BINARY)
    answer = await client.post("/in/bin", content=BINARY, headers=headers)
    assert answer.status_code == 202, answer.text
    event = (await client.get(f"/api/v1/events/{answer.json()['id']}", headers=admin)).json()
    assert event["body"] is None
    assert event["body_base64"] == base64.b64encode(BINARY).decode()
    assert event["dedup_key"] == "msg_1"
    assert event["event_type"] is None


async def test_rejected_binary_body_preview_does_not_break_the_list(client, admin, make_source):
    source = await make_source("binrej", kind="shopify", secret="s")
    assert (await client.post("/in/binrej", content=BINARY)).status_code == 401
    listed = await client.get(f"/api/v1/sources/{source['id']}/rejected", headers=admin)
    assert listed.status_code == 200
    [kept] = listed.json()["data"]
    assert kept["size"] == len(BINARY)
