"""An exception and what caused it: libraries wrap one another's errors (Tortoise wraps
asyncpg's, httpx wraps aiohttp's, aiohttp wraps the OS's), and what to do about an error
is decided by the innermost one that says what happened."""

from __future__ import annotations


def exception_chain(exc: BaseException) -> list[BaseException]:
    """`exc`, then its `__cause__` (else its `__context__`), and so on, each once."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain
