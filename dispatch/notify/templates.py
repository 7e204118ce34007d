"""Endpoint templates in Jinja2's immutable sandbox, with time and output caps.

A template is `{"title"?, "text"?, "fields"?: {name: template}, "body"?, "url"?}`; every
value is Jinja2 source. The context is `event` (id, source, event_type, received_at,
headers), `payload` (the body parsed as JSON, or None) and `body` (the body as text).

The sandbox refuses attribute access to internals (`__class__`, `mro`, function globals)
and method calls that mutate; the caps stop a template that would loop or grow without
end: every range is capped, every call, attribute lookup and output chunk checks the
deadline, and the output stops at `MAX_OUTPUT` characters.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jinja2 import ChainableUndefined, TemplateSyntaxError
from jinja2.exceptions import SecurityError
from jinja2.exceptions import TemplateError as JinjaTemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_OUTPUT = 256 * 1024
"""Characters one template part may render."""
MAX_SECONDS = 0.5
"""Wall time one template part may take to render."""
MAX_RANGE = 10_000
MAX_REPEAT = 64 * 1024
"""Largest string or list `*` may build, and largest width a padding filter may ask for."""
MAX_SOURCE = 64 * 1024
_WIDE = re.compile(r"\d{6,}")
"""A width of a million or more in a format string."""
PARTS = ("title", "text", "body", "url")
MAX_FIELDS = 25


class TemplateProblem(Exception):
    """A template that does not compile (API: 422) or fails to render (delivery: failed,
    error kind `template`). The message names the part and, when known, the line."""


class _Overrun(SecurityError):
    pass


@dataclass(frozen=True, slots=True)
class EventView:
    """What a template may see of an event."""

    id: str
    source: str | None
    event_type: str | None
    received_at: datetime | None
    headers: Mapping[str, str]
    body: bytes
    content_type: str = ""


class _Budget:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise _Overrun(f"rendering took longer than {MAX_SECONDS:g} s")


class _Environment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def __init__(self) -> None:
        super().__init__(undefined=ChainableUndefined, autoescape=False,
                         keep_trailing_newline=False)
        self.budget: _Budget | None = None
        self.globals = {"range": self._range}
        for name in ("center", "indent", "wordwrap", "truncate", "format"):
            self.filters[name] = _capped_filter(self.filters[name])

    def _check(self) -> None:
        if self.budget is not None:
            self.budget.check()

    def _range(self, *args: int) -> Iterator[int]:
        values = range(*args)
        if len(values) > MAX_RANGE:
            raise _Overrun(f"range() is limited to {MAX_RANGE} items")
        for value in values:
            self._check()
            yield value

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        __self._check()
        for value in (*args, *kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool) and value > MAX_REPEAT \
                    and isinstance(getattr(__obj, "__self__", None), str):
                raise _Overrun("a string method argument is too large")
        return super().call(__context, __obj, *args, **kwargs)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        raise SecurityError(f"access to attribute {attribute!r} of "
                            f"{type(obj).__name__!r} object is unsafe")

    def getattr(self, obj: Any, attribute: str) -> Any:
        self._check()
        if isinstance(obj, str) and attribute in ("format", "format_map") and _WIDE.search(obj):
            raise _Overrun("a width of a million or more is refused")
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        self._check()
        return super().getitem(obj, argument)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > 64:
                raise _Overrun("exponents above 64 are refused")
            return left ** right
        sequence, count = (left, right) if isinstance(right, int) else (right, left)
        if isinstance(sequence, str | list | tuple) and isinstance(count, int) \
                and len(sequence) * count > MAX_REPEAT:
            raise _Overrun(f"repeating to more than {MAX_REPEAT} items is refused")
        return left * right


def _capped_filter(inner: Callable[..., Any]) -> Callable[..., Any]:
    def capped(*args: Any, **kwargs: Any) -> Any:
        for value in (*args[1:], *kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool) and value > MAX_REPEAT:
                raise _Overrun(f"filter argument {value} is too large")
        if args and isinstance(args[0], str) and _WIDE.search(args[0]):
            raise _Overrun("a width of a million or more is refused")
        return inner(*args, **kwargs)

    for attribute in ("jinja_pass_arg",):
        if hasattr(inner, attribute):
            setattr(capped, attribute, getattr(inner, attribute))
    capped.__name__ = inner.__name__
    return capped


_ENV = _Environment()


@functools.lru_cache(maxsize=1024)
def _compiled(source: str) -> Any:
    """Compiled once per source text (compiling costs far more than rendering); a syntax
    error raises and is not cached."""
    return _ENV.from_string(source)


def _compile(part: str, source: str) -> Any:
    if len(source) > MAX_SOURCE:
        raise TemplateProblem(f"{part}: longer than {MAX_SOURCE} characters")
    try:
        return _compiled(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"{part}: line {exc.lineno}: {exc.message}") from None


def _parts(spec: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for name in PARTS:
        value = spec.get(name)
        if value is not None:
            yield name, value
    for name, value in (spec.get("fields") or {}).items():
        yield f"fields.{name}", value


def validate_template(spec: Any) -> dict[str, Any] | None:
    """The template as stored, or TemplateProblem naming what is wrong (part and line)."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise TemplateProblem("template: must be an object with title, text, fields, body")
    unknown = sorted(set(spec) - {*PARTS, "fields"})
    if unknown:
        raise TemplateProblem(f"template: unknown key {unknown[0]!r} (known: title, text, "
                              "fields, body, url)")
    for name in PARTS:
        if spec.get(name) is not None and not isinstance(spec[name], str):
            raise TemplateProblem(f"{name}: must be a string")
    fields = spec.get("fields")
    if fields is not None:
        if not isinstance(fields, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in fields.items()):
            raise TemplateProblem("fields: must map names to template strings")
        if len(fields) > MAX_FIELDS:
            raise TemplateProblem(f"fields: at most {MAX_FIELDS}")
    for part, source in _parts(spec):
        _compile(part, source)
    return spec


def parse_payload(body: bytes, content_type: str = "") -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def context_for(event: EventView) -> dict[str, Any]:
    return {
        "event": {
            "id": event.id,
            "source": event.source,
            "event_type": event.event_type,
            "received_at": event.received_at.isoformat() if event.received_at else None,
            "headers": dict(event.headers),
        },
        "payload": parse_payload(event.body, event.content_type),
        "body": event.body.decode("utf-8", "replace"),
    }


def render_part(part: str, source: str, context: Mapping[str, Any],
                seconds: float = MAX_SECONDS, max_output: int = MAX_OUTPUT) -> str:
    """One template part rendered, or TemplateProblem with the reason."""
    template = _compile(part, source)
    _ENV.budget = _Budget(seconds)
    chunks: list[str] = []
    size = 0
    try:
        for chunk in template.generate(context):
            size += len(chunk)
            if size > max_output:
                raise _Overrun(f"the output is longer than {max_output} characters")
            _ENV.budget.check()
            chunks.append(chunk)
    except SecurityError as exc:
        raise TemplateProblem(f"{part}: refused: {exc}") from None
    except JinjaTemplateError as exc:
        raise TemplateProblem(f"{part}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any error inside a template is the template's
        raise TemplateProblem(f"{part}: {type(exc).__name__}: {exc}") from None
    finally:
        _ENV.budget = None
    return "".join(chunks)


def render_spec(spec: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """Every part of `spec` rendered: {"title": str, ..., "fields": [(name, value)]}."""
    out: dict[str, Any] = {}
    for name in PARTS:
        if spec.get(name) is not None:
            out[name] = render_part(name, spec[name], context)
    fields: list[tuple[str, str]] = []
    for name, source in (spec.get("fields") or {}).items():
        value = render_part(f"fields.{name}", source, context).strip()
        if value:
            fields.append((name, value))
    out["fields"] = fields
    return out

