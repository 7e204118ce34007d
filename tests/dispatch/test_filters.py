"""The JSON filter language, event-type patterns and source lists (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel.filters import (
    NOT_JSON,
    FilterError,
    endpoint_wants,
    event_type_matches,
    matches_filter,
    parse_document,
    source_matches,
    validate_filter,
)

DOC = {
    "type": "invoice.paid",
    "livemode": False,
    "count": 3,
    "zero": 0,
    "nothing": None,
    "tags": ["urgent", "billing", 7],
    "matrix": [[1, 2], [3]],
    "data": {
        "amount": 1250,
        "ratio": 0.5,
        "currency": "eur",
        "status": "paid",
        "customer": {"email": "ann@example.com", "name": "Ann"},
        "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 1}],
        "empty": [],
        "meta": {"a": 1},
    },
}

CASES = [
    # plain equality and dotted paths
    ({"type": "invoice.paid"}, True),
    ({"type": "invoice.failed"}, False),
    ({"data.status": "paid"}, True),
    ({"data.customer.email": "ann@example.com"}, True),
    ({"data.customer.email": "bob@example.com"}, False),
    ({"data.items.0.sku": "A-1"}, True),
    ({"data.items.1.sku": "A-1"}, False),
    ({"data.items.5.sku": "A-1"}, False),
    ({"data.amount": 1250.0}, True),
    ({"nothing": None}, True),
    ({"livemode": False}, True),
    # several keys: all must hold
    ({"type": "invoice.paid", "data.currency": "eur"}, True),
    ({"type": "invoice.paid", "data.currency": "usd"}, False),
    # arrays: any element equal, or the whole array
    ({"tags": "urgent"}, True),
    ({"tags": 7}, True),
    ({"tags": "nope"}, False),
    ({"tags": ["urgent", "billing", 7]}, True),
    ({"tags": ["urgent"]}, False),
    ({"matrix": [3]}, True),
    # nested filter == dotted path
    ({"data": {"status": "paid"}}, True),
    ({"data": {"status": "open"}}, False),
    ({"data": {"customer": {"name": "Ann"}, "currency": "eur"}}, True),
    ({"data": {"meta": {"a": 1}}}, True),
    # bool is not a number, strings are not numbers
    ({"livemode": 0}, False),
    ({"zero": False}, False),
    ({"count": True}, False),
    ({"count": "3"}, False),
    ({"nothing": False}, False),
    ({"data.meta": {"$eq": {"a": 1}}}, True),
    ({"data.meta": {"$eq": {"a": True}}}, False),
    # $eq / $neq
    ({"data.currency": {"$eq": "eur"}}, True),
    ({"tags": {"$eq": "billing"}}, True),
    ({"data.currency": {"$neq": "usd"}}, True),
    ({"data.currency": {"$neq": "eur"}}, False),
    ({"tags": {"$neq": "urgent"}}, False),
    # $in / $nin
    ({"data.currency": {"$in": ["usd", "eur"]}}, True),
    ({"data.currency": {"$in": ["usd", "gbp"]}}, False),
    ({"data.currency": {"$in": []}}, False),
    ({"tags": {"$in": ["x", "billing"]}}, True),
    ({"count": {"$in": [True, "3"]}}, False),
    ({"data.currency": {"$nin": ["usd", "gbp"]}}, True),
    ({"data.currency": {"$nin": ["eur"]}}, False),
    ({"tags": {"$nin": ["billing"]}}, False),
    # ordering: numbers with numbers, strings with strings
    ({"data.amount": {"$gt": 1000}}, True),
    ({"data.amount": {"$gt": 1250}}, False),
    ({"data.amount": {"$gte": 1250}}, True),
    ({"data.amount": {"$lt": 1250.5}}, True),
    ({"data.amount": {"$lte": 1249}}, False),
    ({"data.amount": {"$gt": 1000, "$lt": 2000}}, True),
    ({"data.amount": {"$gt": 1000, "$lt": 1100}}, False),
    ({"data.ratio": {"$gte": 0.5, "$lte": 0.5}}, True),
    ({"data.currency": {"$gt": "aaa"}}, True),
    ({"data.currency": {"$lt": "aaa"}}, False),
    ({"data.amount": {"$gt": "1"}}, False),
    ({"data.currency": {"$gt": 1}}, False),
    ({"livemode": {"$lt": 1}}, False),
    ({"nothing": {"$lt": 1}}, False),
    ({"tags": {"$gt": 1}}, False),
    ({"data": {"$gt": 1}}, False),
    # strings
    ({"type": {"$startsWith": "invoice."}}, True),
    ({"type": {"$startsWith": "charge."}}, False),
    ({"type": {"$endsWith": ".paid"}}, True),
    ({"type": {"$endsWith": ".failed"}}, False),
    ({"count": {"$startsWith": "3"}}, False),
    ({"tags": {"$startsWith": "urg"}}, False),
    ({"data.customer.email": {"$contains": "@example."}}, True),
    ({"data.customer.email": {"$contains": "@other."}}, False),
    ({"data.customer.email": {"$contains": 1}}, False),
    ({"tags": {"$contains": "billing"}}, True),
    ({"tags": {"$contains": "bill"}}, False),
    ({"tags": {"$contains": 7}}, True),
    ({"tags": {"$contains": True}}, False),
    ({"data.empty": {"$contains": "x"}}, False),
    ({"count": {"$contains": 3}}, False),
    # $exists
    ({"data.amount": {"$exists": True}}, True),
    ({"nothing": {"$exists": True}}, True),
    ({"data.refund": {"$exists": True}}, False),
    ({"data.refund": {"$exists": False}}, True),
    ({"data.amount": {"$exists": False}}, False),
    # missing fields: only $exists:false, $neq and $nin hold
    ({"data.refund": "x"}, False),
    ({"data.refund": None}, False),
    ({"data.refund": {"$eq": None}}, False),
    ({"data.refund": {"$neq": "x"}}, True),
    ({"data.refund": {"$nin": ["x"]}}, True),
    ({"data.refund": {"$in": ["x"]}}, False),
    ({"data.refund": {"$gt": 0}}, False),
    ({"data.refund": {"$gte": 0}}, False),
    ({"data.refund": {"$lt": 0}}, False),
    ({"data.refund": {"$lte": 0}}, False),
    ({"data.refund": {"$startsWith": ""}}, False),
    ({"data.refund": {"$endsWith": ""}}, False),
    ({"data.refund": {"$contains": ""}}, False),
    ({"type.deeper": "x"}, False),
    ({"tags.sku": "x"}, False),
    ({"nope": {"inner": {"$exists": False}}}, True),
    ({"nope": {"inner": "x"}}, False),
    # $and / $or / $not
    ({"$and": [{"type": "invoice.paid"}, {"data.amount": {"$gt": 10}}]}, True),
    ({"$and": [{"type": "invoice.paid"}, {"data.amount": {"$gt": 10000}}]}, False),
    ({"$or": [{"type": "charge.failed"}, {"data.currency": "eur"}]}, True),
    ({"$or": [{"type": "charge.failed"}, {"data.currency": "usd"}]}, False),
    ({"$not": {"type": "invoice.paid"}}, False),
    ({"$not": {"type": "charge.failed"}}, True),
    ({"$not": {"data.refund": {"$exists": True}}}, True),
    ({"data.amount": {"$not": {"$gt": 5000}}}, True),
    ({"data.refund": {"$not": {"$gt": 5000}}}, True),
    ({"data": {"$or": [{"status": "open"}, {"status": "paid"}]}}, True),
    (
        {"$or": [{"$and": [{"data.currency": "eur"}, {"data.amount": {"$lt": 100}}]},
                 {"$not": {"tags": {"$contains": "billing"}}}]},
        False,
    ),
    ({"type": {"$startsWith": "invoice."}, "$or": [{"count": 3}, {"count": 4}]}, True),
    # the empty filter matches any JSON object or array
    ({}, True),
]


@pytest.mark.parametrize(("rule", "expected"), CASES, ids=[str(c[0]) for c in CASES])
def test_matches(rule, expected):
    validate_filter(rule)
    assert matches_filter(rule, DOC) is expected


def test_nested_filter_equals_dotted_path():
    for status in ("paid", "open"):
        nested = {"data": {"status": status, "customer": {"name": {"$startsWith": "A"}}}}
        dotted = {"data.status": status, "data.customer.name": {"$startsWith": "A"}}
        assert matches_filter(nested, DOC) is matches_filter(dotted, DOC)


@pytest.mark.parametrize("document", [NOT_JSON, "a string", 42, None, True, 1.5])
def test_a_body_that_is_not_a_json_object_or_array_never_matches(document):
    assert matches_filter(None, document) is True
    assert matches_filter({}, document) is False
    assert matches_filter({"a": {"$exists": False}}, document) is False
    assert matches_filter({"$not": {"a": 1}}, document) is False


def test_array_documents_are_indexed_by_number():
    document = [{"id": "a"}, {"id": "b"}]
    assert matches_filter({"1.id": "b"}, document)
    assert not matches_filter({"id": "b"}, document)


def test_parse_document():
    assert parse_document(b'{"a": [1]}') == {"a": [1]}
    assert parse_document(b"not json") is NOT_JSON
    assert parse_document(b"\xff\xfe") is NOT_JSON
    assert parse_document(b"") is NOT_JSON


def test_malformed_rules_do_not_match_instead_of_raising():
    assert matches_filter({"a": {"$foo": 1}}, {"a": 1}) is False
    assert matches_filter({"$and": "x"}, {"a": 1}) is False
    assert matches_filter({"$and": []}, {"a": 1}) is False
    assert matches_filter({"$not": 3}, {"a": 1}) is False
    assert matches_filter({"a": {"$in": 1}}, {"a": 1}) is False
    assert matches_filter({"a": {"$nin": 1}}, {"a": 1}) is False


# --- validation ------------------------------------------------------------------------------

INVALID = [
    ([], "filter: must be a JSON object, not a list"),
    ("paid", "filter: must be a JSON object, not a string"),
    (None, "filter: must be a JSON object, not null"),
    ({"data.amount": {"$foo": 1}}, "filter.data.amount: unknown operator $foo"),
    ({"data": {"amount": {"$foo": 1}}}, "filter.data.amount: unknown operator $foo"),
    ({"$regex": "x"}, "filter: unknown operator $regex"),
    ({"a": {"$regex": "^x"}}, "filter.a: unknown operator $regex"),
    ({"$and": {"a": 1}}, "filter.$and: must be a non-empty list of filters (objects)"),
    ({"$and": []}, "filter.$and: must be a non-empty list of filters (objects)"),
    ({"$or": [{"a": 1}, "b"]}, "filter.$or[1]: must be a JSON object, not a string"),
    ({"$or": [{"a": {"$bad": 1}}]}, "filter.$or[0].a: unknown operator $bad"),
    ({"$not": [{"a": 1}]}, "filter.$not: must be a JSON object, not a list"),
    ({"a": {"$in": "x"}}, "filter.a.$in: must be a list of values"),
    ({"a": {"$nin": {"x": 1}}}, "filter.a.$nin: must be a list of values"),
    ({"a": {"$exists": 1}}, "filter.a.$exists: must be true or false"),
    ({"a": {"$exists": "yes"}}, "filter.a.$exists: must be true or false"),
    ({"a": {"$startsWith": 1}}, "filter.a.$startsWith: must be a string"),
    ({"a": {"$endsWith": None}}, "filter.a.$endsWith: must be a string"),
    ({"a": {"$gt": True}}, "filter.a.$gt: must be a number or a string"),
    ({"a": {"$lte": [1]}}, "filter.a.$lte: must be a number or a string"),
    ({"a": {"$eq": float("nan")}}, "filter.a.$eq: numbers must be finite"),
    ({"a": {1, 2}}, "filter.a: not a JSON value (set)"),
    ({"$gt": 1}, "filter.$gt: an operator must be applied to a field"),
    ({"$and": [{"$eq": 1}]}, "filter.$and[0].$eq: an operator must be applied to a field"),
    ({"a..b": 1}, "filter.a..b: empty segment in field path 'a..b'"),
    ({"": 1}, "filter.: empty segment in field path ''"),
]


@pytest.mark.parametrize(("rule", "message"), INVALID, ids=[c[1] for c in INVALID])
def test_invalid_filters_are_refused_naming_the_path(rule, message):
    with pytest.raises(FilterError) as raised:
        validate_filter(rule)
    assert str(raised.value).startswith(message)
    assert isinstance(raised.value, ValueError)


def _nested(depth: int) -> dict:
    rule: dict = {"leaf": 1}
    for _ in range(depth - 1):
        rule = {"a": rule}
    return rule


def test_depth_limit():
    validate_filter(_nested(32))
    with pytest.raises(FilterError, match="nested deeper than 32 levels"):
        validate_filter(_nested(33))
    with pytest.raises(FilterError, match="nested deeper than 32 levels"):
        validate_filter({"a": {"$in": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}})


def test_node_limit():
    validate_filter({f"k{i}": i for i in range(999)})
    with pytest.raises(FilterError, match="more than 1000 nodes"):
        validate_filter({f"k{i}": i for i in range(1000)})
    with pytest.raises(FilterError, match="more than 1000 nodes"):
        validate_filter({"a": {"$in": list(range(1000))}})


def test_valid_filters_pass():
    for rule, _ in CASES:
        validate_filter(rule)


# --- event types, sources, the combination -------------------------------------------------

EVENT_TYPES = [
    ([], "invoice.paid", True),
    ([], None, True),
    (["*"], None, True),
    (["*"], "anything", True),
    (["invoice.paid"], "invoice.paid", True),
    (["invoice.paid"], "invoice.paid.extra", False),
    (["invoice.paid"], "invoice.failed", False),
    (["invoice.*"], "invoice.paid", True),
    (["invoice.*"], "invoice.", True),
    (["invoice.*"], "invoices.paid", False),
    (["invoice*"], "invoices.paid", True),
    (["charge.failed", "invoice.*"], "invoice.paid", True),
    (["charge.failed", "invoice.*"], "charge.succeeded", False),
    (["invoice.*"], None, False),
    (["invoice.paid"], None, False),
    (["Invoice.paid"], "invoice.paid", False),
]


@pytest.mark.parametrize(("patterns", "event_type", "expected"), EVENT_TYPES)
def test_event_type_matches(patterns, event_type, expected):
    assert event_type_matches(patterns, event_type) is expected


SOURCES = [
    ([], "github", True),
    ([], None, True),
    (None, None, True),
    (["github"], "github", True),
    (["github", "stripe"], "stripe", True),
    (["github"], "stripe", False),
    (["github"], None, False),
]


@pytest.mark.parametrize(("slugs", "slug", "expected"), SOURCES)
def test_source_matches(slugs, slug, expected):
    assert source_matches(slugs, slug) is expected


def test_endpoint_wants_needs_all_three():
    doc = {"amount": 5}
    assert endpoint_wants([], [], None, None, None, NOT_JSON)
    assert endpoint_wants(["a.*"], ["gh"], {"amount": {"$gt": 1}}, "a.b", "gh", doc)
    assert not endpoint_wants(["x"], ["gh"], {"amount": {"$gt": 1}}, "a.b", "gh", doc)
    assert not endpoint_wants(["a.*"], ["st"], {"amount": {"$gt": 1}}, "a.b", "gh", doc)
    assert not endpoint_wants(["a.*"], ["gh"], {"amount": {"$gt": 9}}, "a.b", "gh", doc)
    assert not endpoint_wants([], [], {}, "a.b", "gh", NOT_JSON)


# --- properties ------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.sampled_from([0.5, 1.0, -2.5]),
    st.sampled_from(["", "a", "ab", "b", "paid"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3),
    ),
    max_leaves=8,
)
documents = st.dictionaries(st.sampled_from(["a", "b", "c"]), json_values, max_size=3)
paths = st.sampled_from(["a", "b", "c", "a.b", "a.0", "b.c.a", "c.1.a"])
operators = st.one_of(
    st.builds(lambda v: {"$eq": v}, json_values),
    st.builds(lambda v: {"$neq": v}, json_values),
    st.builds(lambda v: {"$in": v}, st.lists(scalars, max_size=3)),
    st.builds(lambda v: {"$nin": v}, st.lists(scalars, max_size=3)),
    st.builds(lambda o, v: {o: v}, st.sampled_from(["$gt", "$gte", "$lt", "$lte"]),
              st.one_of(st.integers(-5, 5), st.sampled_from(["a", "b"]))),
    st.builds(lambda v: {"$exists": v}, st.booleans()),
    st.builds(lambda o, v: {o: v}, st.sampled_from(["$startsWith", "$endsWith", "$contains"]),
              st.sampled_from(["", "a", "b"])),
    st.builds(lambda v: {"$contains": v}, scalars),
)
filters = st.recursive(
    st.dictionaries(paths, st.one_of(scalars, operators), min_size=1, max_size=2),
    lambda inner: st.one_of(
        st.builds(lambda fs: {"$and": fs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda fs: {"$or": fs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda f: {"$not": f}, inner),
        st.builds(lambda p, f: {p: f}, st.sampled_from(["a", "b"]), inner),
    ),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(rule=filters, other=filters, document=documents)
def test_combinator_laws(rule, other, document):
    validate_filter(rule)
    result = matches_filter(rule, document)
    assert isinstance(result, bool)
    assert matches_filter({"$not": rule}, document) is (not result)
    assert matches_filter({"$not": {"$not": rule}}, document) is result
    assert matches_filter({"$and": [rule]}, document) is result
    assert matches_filter({"$or": [rule]}, document) is result
    both = matches_filter(other, document)
    assert matches_filter({"$and": [rule, other]}, document) is (result and both)
    assert matches_filter({"$or": [rule, other]}, document) is (result or both)
    assert matches_filter({"$or": [rule, {"$not": rule}]}, document) is True


@settings(max_examples=200, deadline=None)
@given(value=json_values, document=documents, path=paths)
def test_neq_and_nin_are_the_negations_of_eq_and_in(value, document, path):
    eq = matches_filter({path: {"$eq": value}}, document)
    assert matches_filter({path: value}, document) is eq or isinstance(value, dict)
    assert matches_filter({path: {"$neq": value}}, document) is (not eq)
    assert matches_filter({path: {"$in": [value]}}, document) is eq
    assert matches_filter({path: {"$nin": [value]}}, document) is (not eq)
