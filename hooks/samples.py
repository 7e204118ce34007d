"""Sample webhooks (`hooks/fixtures/<provider>.<event>.json`) and the requests that make
them look as if the provider had sent them to a given source.

A fixture holds the provider's headers and JSON body. Making a request from it fills in
what a provider makes fresh for every delivery (GitHub's `X-GitHub-Delivery`, Stripe's
event `id` and `created`, Shopify's webhook id, a Standard Webhooks message id), so each
sample is a new event for the source's dedup rule, then signs it the way the source's
verification kind expects, with the source's own secret.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import secrets
import string
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hooks.verify import DEFAULT_TOKEN_HEADER, Verification, hmac_digest, standard_webhooks_key

FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"
_ALPHANUMERIC = string.ascii_letters + string.digits


@dataclass(frozen=True)
class Fixture:
    name: str
    provider: str
    event_type: str
    description: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class SampleRequest:
    headers: dict[str, str]
    body: bytes
    query: dict[str, str] = field(default_factory=dict)


@functools.cache
def fixtures() -> dict[str, Fixture]:
    """Every fixture by name (`github.push`), read once."""
    found: dict[str, Fixture] = {}
    for path in sorted(FIXTURES_DIR.glob("*.json")):
        data = json.loads(path.read_text())
        name = path.name.removesuffix(".json")
        found[name] = Fixture(name=name, provider=data["provider"],
                              event_type=data["event_type"], description=data["description"],
                              headers={k.lower(): v for k, v in data["headers"].items()},
                              body=data["body"])
    return found


def _token(length: int) -> str:
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


def fresh(fixture: Fixture, now: float) -> tuple[dict[str, str], dict[str, Any]]:
    """The fixture's headers and body with the values a provider makes per delivery."""
    headers = dict(fixture.headers)
    body = json.loads(json.dumps(fixture.body))
    moment = datetime.fromtimestamp(now, UTC)
    if fixture.provider == "github":
        headers["x-github-delivery"] = str(uuid.uuid4())
    elif fixture.provider == "stripe":
        body["id"] = "evt_" + _token(24)
        body["created"] = int(now)
    elif fixture.provider == "shopify":
        headers["x-shopify-webhook-id"] = str(uuid.uuid4())
        headers["x-shopify-event-id"] = str(uuid.uuid4())
        headers["x-shopify-triggered-at"] = moment.isoformat().replace("+00:00", "Z")
    elif fixture.provider == "standard_webhooks":
        headers["webhook-id"] = "msg_" + _token(27)
        body["timestamp"] = moment.isoformat().replace("+00:00", "Z")
    return headers, body


def sign(request: SampleRequest, verification: Verification, secret: str, now: float) -> None:
    """Add what `verification` checks, computed with `secret` (in place)."""
    headers, body, kind = request.headers, request.body, verification.kind
    timestamp = str(int(now))
    if kind == "github":
        headers["x-hub-signature"] = "sha1=" + hmac.new(
            secret.encode(), body, hashlib.sha1).hexdigest()
        headers["x-hub-signature-256"] = "sha256=" + hmac.new(
            secret.encode(), body, hashlib.sha256).hexdigest()
    elif kind == "stripe":
        digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body,
                          hashlib.sha256).hexdigest()
        headers["stripe-signature"] = f"t={timestamp},v1={digest}"
    elif kind == "shopify":
        headers["x-shopify-hmac-sha256"] = base64.b64encode(
            hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    elif kind == "standard_webhooks":
        message_id = headers.setdefault("webhook-id", "msg_" + _token(27))
        headers["webhook-timestamp"] = timestamp
        digest = hmac.new(standard_webhooks_key(secret),
                          f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
        headers["webhook-signature"] = "v1," + base64.b64encode(digest).decode()
    elif kind == "hmac":
        header = (verification.header or "x-signature").lower()
        headers[header] = (verification.prefix or "") + hmac_digest(verification, secret, body)
    elif kind == "token":
        if verification.query_param:
            request.query[verification.query_param] = secret
        else:
            header = (verification.header or DEFAULT_TOKEN_HEADER).lower()
            headers[header] = f"Bearer {secret}" if header == "authorization" else secret


def sample_request(fixture: Fixture, verification: Verification, secret: str,
                   now: float) -> SampleRequest:
    headers, body = fresh(fixture, now)
    request = SampleRequest(headers=headers, body=json.dumps(body, indent=2).encode())
    sign(request, verification, secret, now)
    return request
