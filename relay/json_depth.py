"""JSON bodies parsed with a bound on nesting: anything deeper is treated as not JSON.

Rules (`json_path`) and endpoint filters look into event bodies. A body nested deeper than
`MAX_JSON_DEPTH` is opaque to both: it is stored and forwarded as it came, but no rule finds
anything in it and no filter matches it. Without the bound, a 100,000-level body made the
parser (or a walk over the result) exceed Python's recursion limit.
"""

from __future__ import annotations

import json
from typing import Any

MAX_JSON_DEPTH = 128


class TooDeep(ValueError):
    """The document nests arrays/objects deeper than the limit (or does not parse)."""


def _opening_brackets(body: bytes) -> int:
    return body.count(b"[") + body.count(b"{")


def nesting_depth_over(value: Any, limit: int) -> bool:
    """True when `value` nests lists/dicts more than `limit` levels (walked without
    recursion, stopping at the first level past the limit)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, dict | list))
    return False


def loads_bounded(body: bytes | str, limit: int = MAX_JSON_DEPTH) -> Any:
    """`json.loads(body)`, raising `TooDeep` for a document nested past `limit` and
    `ValueError` for one that is not JSON."""
    try:
        value = json.loads(body)
    except RecursionError:
        raise TooDeep(f"nested deeper than {limit} levels") from None
    raw = body.encode() if isinstance(body, str) else body
    if _opening_brackets(raw) > limit and nesting_depth_over(value, limit):
        raise TooDeep(f"nested deeper than {limit} levels")
    return value
