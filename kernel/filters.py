"""Which events an endpoint wants: event-type patterns, source slugs and the JSON filter.

The filter language (docs/api.md, "The JSON filter language") is evaluated against the
event's parsed JSON body. A filter is an object; every key must hold:

- a dotted path (`data.object.status`; a numeric segment indexes an array) whose value is
  a plain JSON value (equality; against an array in the body, any element equal is enough),
  an operator object (`{"$gt": 5, "$lt": 10}`) or a nested filter (`{"status": "paid"}`,
  evaluated relative to that path);
- `$and` / `$or` with a non-empty list of filters, `$not` with one filter.

On a missing field `$exists: false`, `$neq` and `$nin` hold; every other operator fails.
Comparing incompatible types is simply false (a bool is not a number).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from kernel.json_depth import loads_bounded

NOT_JSON = object()
"""Pass this as the document when the event body is not JSON: it matches no filter."""

MAX_DEPTH = 32
MAX_NODES = 1000

_MISSING = object()

COMBINATORS = frozenset({"$and", "$or", "$not"})
OPERATORS = frozenset({
    "$eq", "$neq", "$in", "$nin", "$gt", "$gte", "$lt", "$lte",
    "$exists", "$startsWith", "$endsWith", "$contains",
})


class FilterError(ValueError):
    """A malformed filter; the message starts with the path of the problem."""


# --- validation ------------------------------------------------------------------------------


def validate_filter(rule: object) -> None:
    """Raise FilterError when `rule` is not a well-formed filter."""
    _Validator().filter(rule, "filter", depth=1, at_root=True)


class _Validator:
    def __init__(self) -> None:
        self.nodes = 0

    def count(self, path: str, depth: int, *, container: bool) -> None:
        """Every value is a node; objects and lists are the levels of nesting."""
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise FilterError(f"{path}: the filter has more than {MAX_NODES} nodes")
        if container and depth > MAX_DEPTH:
            raise FilterError(f"{path}: nested deeper than {MAX_DEPTH} levels")

    def filter(self, rule: object, path: str, *, depth: int, at_root: bool) -> None:
        self.count(path, depth, container=True)
        if not isinstance(rule, dict):
            raise FilterError(f"{path}: must be a JSON object, not {_type_name(rule)}")
        for key, value in rule.items():
            if not isinstance(key, str):
                raise FilterError(f"{path}: keys must be strings")
            here = f"{path}.{key}"
            if key in ("$and", "$or"):
                if not isinstance(value, list) or not value:
                    raise FilterError(f"{here}: must be a non-empty list of filters (objects)")
                for index, item in enumerate(value):
                    self.filter(item, f"{here}[{index}]", depth=depth + 1, at_root=at_root)
            elif key == "$not":
                self.filter(value, here, depth=depth + 1, at_root=at_root)
            elif key.startswith("$"):
                if key not in OPERATORS:
                    raise FilterError(f"{path}: unknown operator {key}")
                if at_root:
                    raise FilterError(
                        f"{here}: an operator must be applied to a field, "
                        f'e.g. {{"amount": {{"{key}": ...}}}}'
                    )
                self.operator(key, value, here, depth=depth + 1)
            else:
                if any(segment == "" for segment in key.split(".")):
                    raise FilterError(f"{here}: empty segment in field path {key!r}")
                if isinstance(value, dict):
                    self.filter(value, here, depth=depth + 1, at_root=False)
                else:
                    self.value(value, here, depth=depth + 1)

    def operator(self, op: str, operand: object, path: str, *, depth: int) -> None:
        if op in ("$in", "$nin"):
            if not isinstance(operand, list):
                raise FilterError(f"{path}: must be a list of values")
        elif op == "$exists":
            if not isinstance(operand, bool):
                raise FilterError(f"{path}: must be true or false")
        elif op in ("$startsWith", "$endsWith"):
            if not isinstance(operand, str):
                raise FilterError(f"{path}: must be a string")
        elif op in ("$gt", "$gte", "$lt", "$lte") and not (
            _is_number(operand) or isinstance(operand, str)
        ):
            raise FilterError(f"{path}: must be a number or a string")
        self.value(operand, path, depth=depth)

    def value(self, value: object, path: str, *, depth: int) -> None:
        self.count(path, depth, container=isinstance(value, list | dict))
        if isinstance(value, list):
            for index, item in enumerate(value):
                self.value(item, f"{path}[{index}]", depth=depth + 1)
        elif isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise FilterError(f"{path}: keys must be strings")
                self.value(item, f"{path}.{key}", depth=depth + 1)
        elif isinstance(value, float) and not math.isfinite(value):
            raise FilterError(f"{path}: numbers must be finite")
        elif not (value is None or isinstance(value, str | int | float | bool)):
            raise FilterError(f"{path}: not a JSON value ({_type_name(value)})")


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list"}.get(type(value), type(value).__name__)


# --- evaluation ------------------------------------------------------------------------------

MAX_VISITS = 100_000
"""Body elements one filter may look at for one event. A filter that needs more (a huge
array in the body against a long `$in` list) gives up: the event does not match."""


class FilterBudget:
    """The work one filter may do on one event; `exhausted` says it gave up."""

    __slots__ = ("exhausted", "left", "limit")

    def __init__(self, limit: int = MAX_VISITS) -> None:
        self.limit = limit
        self.left = limit
        self.exhausted = False

    @property
    def spent(self) -> int:
        return self.limit - self.left

    def spend(self, count: int) -> None:
        self.left -= count
        if self.left < 0:
            self.exhausted = True
            raise _OverBudget


class _OverBudget(Exception):
    pass


def matches_filter(rule: dict[str, Any] | None, document: object,
                   budget: FilterBudget | None = None) -> bool:
    """True when `document` (the parsed JSON body, or NOT_JSON) satisfies `rule`.

    A None rule matches everything. A non-null rule never matches a body that is not a JSON
    object or array, nor one it cannot decide within `budget` (then `budget.exhausted`).
    `rule` should have passed `validate_filter`; a malformed part of it simply does not
    match.
    """
    if rule is None:
        return True
    if document is NOT_JSON or not isinstance(document, dict | list):
        return False
    try:
        return _Evaluation(budget or FilterBudget()).filter(rule, document)
    except (_OverBudget, RecursionError):
        if budget is not None:
            budget.exhausted = True
        return False


def _resolve(node: object, path: str) -> object:
    for segment in path.split("."):
        if isinstance(node, dict):
            node = node.get(segment, _MISSING)
        elif isinstance(node, list) and segment.isdigit() and int(segment) < len(node):
            node = node[int(segment)]
        else:
            return _MISSING
    return node


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _scalar_key(value: object) -> tuple[str, object] | None:
    """A hashable key equal for JSON-equal scalars (1 and 1.0 alike, true and 1 not)."""
    if isinstance(value, bool):
        return ("b", value)
    if _is_number(value):
        return ("n", value)
    if isinstance(value, str):
        return ("s", value)
    if value is None:
        return ("z", None)
    return None


class _Evaluation:
    """One filter on one event, every element visited paid for from the budget."""

    def __init__(self, budget: FilterBudget) -> None:
        self.budget = budget

    def filter(self, rule: object, node: object) -> bool:
        if not isinstance(rule, dict):
            return False
        self.budget.spend(1)
        for key, value in rule.items():
            if key == "$and":
                ok = isinstance(value, list) and bool(value) and all(
                    self.filter(f, node) for f in value)
            elif key == "$or":
                ok = isinstance(value, list) and any(self.filter(f, node) for f in value)
            elif key == "$not":
                ok = isinstance(value, dict) and not self.filter(value, node)
            elif isinstance(key, str) and key.startswith("$"):
                ok = self.operator(key, node, value)
            else:
                field = _resolve(node, key)
                ok = (self.filter(value, field) if isinstance(value, dict)
                      else self.equals(field, value))
            if not ok:
                return False
        return True

    def same(self, a: object, b: object) -> bool:
        """JSON equality: 1 == 1.0, but true != 1 and "1" != 1."""
        self.budget.spend(1)
        if isinstance(a, bool) or isinstance(b, bool):
            return isinstance(a, bool) and isinstance(b, bool) and a == b
        if _is_number(a) or _is_number(b):
            return _is_number(a) and _is_number(b) and a == b
        if isinstance(a, list) and isinstance(b, list):
            return len(a) == len(b) and all(
                self.same(x, y) for x, y in zip(a, b, strict=True))
        if isinstance(a, dict) and isinstance(b, dict):
            return a.keys() == b.keys() and all(self.same(a[k], b[k]) for k in a)
        if a is None or b is None:
            return a is None and b is None
        return type(a) is type(b) and a == b

    def equals(self, field: object, value: object) -> bool:
        return self.among(field, [value])

    def among(self, field: object, values: list[object]) -> bool:
        """`field` (or, for an array, one of its elements) equals one of `values`."""
        if field is _MISSING:
            return False
        keys = {key for key in map(_scalar_key, values) if key is not None}
        others = [value for value in values if _scalar_key(value) is None]
        self.budget.spend(1 + len(field) if isinstance(field, list) else 1)
        candidates = [field, *field] if isinstance(field, list) else [field]
        for candidate in candidates:
            key = _scalar_key(candidate)
            if key is not None:
                if key in keys:
                    return True
            elif any(self.same(candidate, other) for other in others):
                return True
        return False

    def contains(self, field: object, operand: object) -> bool:
        if isinstance(field, str):
            self.budget.spend(1 + len(field) // 64)
            return isinstance(operand, str) and operand in field
        if isinstance(field, list):
            self.budget.spend(len(field))
            key = _scalar_key(operand)
            if key is not None:
                return any(_scalar_key(item) == key for item in field)
            return any(self.same(item, operand) for item in field)
        return False

    def operator(self, op: str, field: object, operand: object) -> bool:
        if op == "$eq":
            return self.equals(field, operand)
        if op == "$neq":
            return not self.equals(field, operand)
        if op == "$in":
            return isinstance(operand, list) and self.among(field, operand)
        if op == "$nin":
            return isinstance(operand, list) and not self.among(field, operand)
        if op == "$contains":
            return self.contains(field, operand)
        check = _SCALAR_OPERATORS.get(op)
        return check is not None and check(field, operand)


def _ordered(compare: Callable[[Any, Any], bool]) -> Callable[[object, object], bool]:
    def check(field: object, operand: object) -> bool:
        if _is_number(field) and _is_number(operand):
            return compare(field, operand)
        if isinstance(field, str) and isinstance(operand, str):
            return compare(field, operand)
        return False

    return check


_SCALAR_OPERATORS: dict[str, Callable[[object, object], bool]] = {
    "$gt": _ordered(lambda a, b: a > b),
    "$gte": _ordered(lambda a, b: a >= b),
    "$lt": _ordered(lambda a, b: a < b),
    "$lte": _ordered(lambda a, b: a <= b),
    "$exists": lambda field, want: isinstance(want, bool) and (field is not _MISSING) == want,
    "$startsWith": lambda field, prefix: (
        isinstance(field, str) and isinstance(prefix, str) and field.startswith(prefix)
    ),
    "$endsWith": lambda field, suffix: (
        isinstance(field, str) and isinstance(suffix, str) and field.endswith(suffix)
    ),
}


# --- event type, source, all together -------------------------------------------------------


def event_type_matches(patterns: Iterable[str] | None, event_type: str | None) -> bool:
    """Empty = all; otherwise an exact name or a prefix ending in `*` (`invoice.*`).

    An event without a type matches only an empty list or `*`.
    """
    patterns = list(patterns or ())
    if not patterns:
        return True
    for pattern in patterns:
        if pattern == "*":
            return True
        if event_type is None:
            continue
        if pattern.endswith("*"):
            if event_type.startswith(pattern[:-1]):
                return True
        elif pattern == event_type:
            return True
    return False


def source_matches(slugs: Iterable[str] | None, source_slug: str | None) -> bool:
    """Empty = all; published events (no source) match only an empty list."""
    slugs = list(slugs or ())
    return not slugs or (source_slug is not None and source_slug in slugs)


def endpoint_wants(
    event_types: Iterable[str] | None,
    sources: Iterable[str] | None,
    rule: dict[str, Any] | None,
    event_type: str | None,
    source_slug: str | None,
    document: object,
    budget: FilterBudget | None = None,
) -> bool:
    """The routing decision for one endpoint and one event."""
    return (
        event_type_matches(event_types, event_type)
        and source_matches(sources, source_slug)
        and matches_filter(rule, document, budget)
    )


def parse_document(body: bytes) -> object:
    """The event body as JSON for `matches_filter`, or NOT_JSON (also for a body nested
    deeper than `kernel.json_depth.MAX_JSON_DEPTH`)."""
    try:
        return loads_bounded(body)
    except ValueError:
        return NOT_JSON
