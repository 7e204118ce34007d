"""`POST /api/v1/sources/{id}/trigger`: signed for whatever verification the source uses."""

from __future__ import annotations

import pytest

from tests.dispatch.conftest import make_source

KINDS = [
    {"kind": "none"},
    {"kind": "token", "secret": "s3cret", "header": "X-Token"},
    {"kind": "token", "secret": "s3cret", "query_param": "key"},
    {"kind": "hmac", "secret": "s3cret", "header": "X-Sig", "algorithm": "sha512",
     "encoding": "base64", "prefix": "sha512="},
]


@pytest.mark.parametrize("verification", KINDS, ids=lambda v: "-".join(sorted(v)))
async def test_other_kinds(verification, client, admin):
    source = await make_source(client, admin, "any", verification=verification,
                               event_type={"header": "x-github-event"})
    answer = await client.post(f"/api/v1/sources/{source['id']}/trigger", headers=admin,
                               json={"fixture": "github.push"})
    assert answer.status_code == 202, answer.text
    event = (await client.get(f"/api/v1/events/{answer.json()['id']}", headers=admin)).json()
    assert event["event_type"] == "push"
    assert "s3cret" not in str(event["headers"]) and "s3cret" not in event["query"]


async def test_refusals(client, admin, viewer):
    source = await make_source(client, admin, "gh", verification={"kind": "github",
                                                                  "secret": "x"})
    url = f"/api/v1/sources/{source['id']}/trigger"
    unknown = await client.post(url, headers=admin, json={"fixture": "nope"})
    assert unknown.status_code == 422 and "github.push" in unknown.json()["detail"]
    assert (await client.post(url, headers=viewer, json={"fixture": "github.push"})
            ).status_code == 403
    missing = await client.post("/api/v1/sources/src_missing/trigger", headers=admin,
                                json={"fixture": "github.push"})
    assert missing.status_code == 404
    await client.patch(f"/api/v1/sources/{source['id']}", headers=admin, json={"enabled": False})
    disabled = await client.post(url, headers=admin, json={"fixture": "github.push"})
    assert disabled.status_code == 409
