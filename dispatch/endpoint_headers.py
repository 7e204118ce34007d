"""An endpoint's extra headers are secrets (an `Authorization` token, an API key): stored
encrypted, shown in full to admin tokens only, masked everywhere else."""

from __future__ import annotations

import json
from collections.abc import Mapping

from kernel.crypto import decrypt_secret, encrypt_secret

MASK = "********"


def encrypt_headers(headers: Mapping[str, str] | None) -> str | None:
    """The stored form: Fernet of the JSON object; None for no headers."""
    if not headers:
        return None
    return encrypt_secret(json.dumps(dict(headers), separators=(",", ":")))


def decrypt_headers(stored: str | None) -> dict[str, str]:
    if not stored:
        return {}
    value = json.loads(decrypt_secret(stored))
    return {str(name): str(text) for name, text in value.items()}


def masked(headers: Mapping[str, str]) -> dict[str, str]:
    """The names, each value replaced by the mask."""
    return dict.fromkeys(headers, MASK)


def mask_sent(sent: Mapping[str, str], endpoint_headers: Mapping[str, str]) -> dict[str, str]:
    """A request's headers with the values that came from the endpoint's headers masked
    (matched by lower-case name; a value Relay's own layer replaced stays)."""
    if not endpoint_headers:
        return dict(sent)
    secret = {name.lower(): value for name, value in endpoint_headers.items()}
    return {name: MASK if secret.get(name.lower()) == value else value
            for name, value in sent.items()}
