"""Templates: what they see, compile errors naming the line, render errors, caps, and the
sandbox refusing escapes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from dispatch.notify.render import message_for, transformed_body
from dispatch.notify.templates import (
    EventView,
    TemplateProblem,
    context_for,
    render_part,
    validate_template,
)

EVENT = EventView(
    id="evt_1", source="shop", event_type="order.paid",
    received_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    headers={"content-type": "application/json", "x-shop": "eu"},
    body=b'{"order": {"id": 7, "total": 12.5, "items": ["a", "b"]}}',
    content_type="application/json",
)


def render(source: str, event: EventView = EVENT) -> str:
    return render_part("text", source, context_for(event))


def test_the_context_has_event_payload_and_body():
    assert render("{{ event.id }} {{ event.source }} {{ event.event_type }}") == \
        "evt_1 shop order.paid"
    assert render("{{ event.received_at }}") == "2026-01-02T03:04:05+00:00"
    assert render("{{ event.headers['x-shop'] }}") == "eu"
    assert render("{{ payload.order.total }} {{ payload.order['items'] | join(',') }}") == \
        "12.5 a,b"
    assert render("{{ body }}") == EVENT.body.decode()


def test_a_body_that_is_not_json_gives_payload_none():
    event = EventView("evt_2", None, None, None, {}, b"\xffnot json", "text/plain")
    assert render("{{ payload is none }}|{{ body }}", event) == "True|\ufffdnot json"


def test_missing_values_render_empty_instead_of_failing():
    assert render("[{{ payload.nothing.deeper.still }}]") == "[]"


@pytest.mark.parametrize("source, line", [
    ("{{ payload.order.id }", 1),
    ("line one\n{% if x %}\nno end", 2),
    ("ok\n{{ payload | nosuchfilter }}", 2),
])
def test_a_template_that_does_not_compile_names_the_line(source, line):
    with pytest.raises(TemplateProblem, match=rf"^text: line {line}: "):
        validate_template({"text": source})


def test_template_shape_errors_are_named():
    with pytest.raises(TemplateProblem, match="unknown key 'titel'"):
        validate_template({"titel": "x"})
    with pytest.raises(TemplateProblem, match="fields: must map names"):
        validate_template({"fields": ["a"]})
    with pytest.raises(TemplateProblem, match="fields.Total: line 1"):
        validate_template({"fields": {"Total": "{{ x"}})


def test_a_render_error_is_reported_with_its_part():
    with pytest.raises(TemplateProblem, match="text: ZeroDivisionError"):
        render("{{ 1 / 0 }}")


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ payload.__class__ }}",
    "{{ event.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ range.__self__ }}",
    "{{ (payload.order['items']).append('x') }}",
    "{{ self._TemplateReference__context }}",
    "{% set x = payload.order.update({'id': 1}) %}",
])
def test_sandbox_escapes_are_refused(source):
    with pytest.raises(TemplateProblem, match="refused|is undefined|unsafe|not safely callable"):
        render(source)


@pytest.mark.parametrize("source, reason", [
    ("{{ range(100000) | list }}", "range"),
    ("{{ 'a' * 100000000 }}", "repeating"),
    ("{{ [1] * 100000000 }}", "repeating"),
    ("{{ 'x'.ljust(100000000) }}", "too large"),
    ("{{ 'x' | center(100000000) }}", "too large"),
    ("{{ '%100000000s' | format(1) }}", "width"),
    ("{{ '{:>100000000}'.format(1) }}", "width"),
    ("{{ 2 ** 100 }}", "exponent"),
    ("{% for a in range(9999) %}{% for b in range(9999) %}{% endfor %}{% endfor %}",
     "longer than"),
    ("{% for a in range(9999) %}{{ 'y' * 60000 }}{% endfor %}", "output is longer"),
])
def test_rendering_is_capped_in_time_and_size(source, reason):
    with pytest.raises(TemplateProblem, match=reason):
        render(source)


def test_a_template_overrides_the_preset_part_by_part():
    message = message_for({"title": "Paid: {{ payload.order.id }}"}, EVENT)
    assert message.title == "Paid: 7"
    assert ("Event", "evt_1") in message.fields


def test_fields_render_in_order_and_empty_ones_are_left_out():
    message = message_for({"title": "t", "fields": {
        "Total": "{{ payload.order.total }}", "Nothing": "{{ payload.none }}",
        "Shop": "{{ event.headers['x-shop'] }}"}}, EVENT)
    assert message.fields == [("Total", "12.5"), ("Shop", "eu")]


def test_a_webhook_body_transformation_renders_json():
    body = transformed_body({"body": '{"id": {{ payload.order.id }}, '
                                     '"who": {{ event.source | tojson }}}'}, EVENT)
    assert json.loads(body) == {"id": 7, "who": "shop"}
    assert transformed_body(None, EVENT) is None
    assert transformed_body({"title": "x"}, EVENT) is None


def test_a_transformation_rendering_invalid_json_fails_with_a_clear_message():
    with pytest.raises(TemplateProblem) as caught:
        transformed_body({"body": '{"id": {{ payload.order.id }},}'}, EVENT)
    assert str(caught.value).startswith(
        "body: the template rendered invalid JSON (the event's content type is "
        "application/json): ")


def test_a_transformation_of_a_non_json_event_may_render_any_text():
    event = EventView("evt_3", "s", None, None, {}, b"a=1", "application/x-www-form-urlencoded")
    assert transformed_body({"body": "got {{ body }}"}, event) == b"got a=1"
