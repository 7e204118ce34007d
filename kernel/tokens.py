"""API tokens: created once (the token is shown then and never again), stored hashed."""

from __future__ import annotations

from datetime import UTC, datetime

from kernel.crypto import hash_token, new_api_token
from kernel.ids import new_id
from kernel.models import SCOPES, ApiToken


async def create_token(name: str, scope: str = "admin") -> tuple[ApiToken, str]:
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    token = new_api_token()
    row = await ApiToken.create(id=new_id("tok"), name=name, scope=scope, token_hash=hash_token(token))
    return row, token


async def revoke_tokens(name_or_id: str) -> int:
    """Revoke the token with this id, or every live token with this name; returns how many."""
    now = datetime.now(UTC)
    by_id = await ApiToken.filter(id=name_or_id, revoked_at=None).update(revoked_at=now)
    if by_id:
        return by_id
    return await ApiToken.filter(name=name_or_id, revoked_at=None).update(revoked_at=now)


async def find_token(token: str) -> ApiToken | None:
    """The live (not revoked) token row for a token as presented, or None."""
    return await ApiToken.get_or_none(token_hash=hash_token(token), revoked_at=None)


async def has_tokens() -> bool:
    return await ApiToken.filter(revoked_at=None).exists()
