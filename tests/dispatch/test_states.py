"""The delivery state machine is defined once, and every SQL statement takes its names from it."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest

from dispatch import states

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("kernel", "hooks", "dispatch", "live", "relay")
STATE_LITERAL = re.compile(r"'(" + "|".join(states.ALL) + r")'")
SQL_WORDS = re.compile(r"\b(SELECT|UPDATE|INSERT|DELETE|WHERE|FILTER)\b")


def product_sources() -> list[Path]:
    files = []
    for package in PACKAGES:
        folder = ROOT / package
        if folder.is_dir():
            files += [path for path in folder.rglob("*.py") if "dbmigrations" not in path.parts]
    return sorted(files)


def bare_states_in_sql(source: str) -> list[str]:
    """The SQL-looking string literals of `source` that name a delivery state outright."""
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.STRING and SQL_WORDS.search(token.string) \
                and STATE_LITERAL.search(token.string):
            found.append(f"line {token.start[0]}: {STATE_LITERAL.search(token.string).group(0)}")
    return found


def test_no_bare_state_literal_in_any_sql_string() -> None:
    offenders = {}
    for path in product_sources():
        if path.name == "states.py":
            continue
        found = bare_states_in_sql(path.read_text())
        if found:
            offenders[str(path.relative_to(ROOT))] = found
    assert offenders == {}, f"write these states as dispatch.states constants: {offenders}"


def test_the_check_finds_a_bare_state() -> None:
    source = 'Q = """\nUPDATE delivery SET status = \'failed\' WHERE id = $1\n"""\n'
    assert bare_states_in_sql(source) == ["line 1: 'failed'"]
    assert bare_states_in_sql('Q = f"UPDATE delivery SET status = \'{FAILED}\'"\n') == []


def test_sources_were_found() -> None:
    names = {path.name for path in product_sources()}
    assert {"queue.py", "settle.py", "routing.py"} <= names


def test_groups_partition_the_states() -> None:
    assert set(states.WAITING) | {states.DELIVERING} == set(states.ACTIVE)
    assert set(states.ACTIVE) | set(states.FINAL) == set(states.ALL)
    assert not set(states.ACTIVE) & set(states.FINAL)
    assert set(states.TRANSITIONS) == set(states.ALL)


def test_sql_renders_the_migrations_index_predicates() -> None:
    """The partial indexes of 0002_dispatcher were written with these exact lists."""
    migration = (ROOT / "relay" / "dbmigrations" / "0002_dispatcher.py").read_text()
    assert f"WHERE status IN {states.WAITING_SQL}" in migration
    assert f"WHERE status IN {states.ACTIVE_SQL}" in migration
    assert states.WAITING_SQL == "('pending', 'retrying')"


@pytest.mark.parametrize(("current", "new", "allowed"), [
    (states.PENDING, states.DELIVERING, True),
    (states.DELIVERING, states.SUCCEEDED, True),
    (states.DELIVERING, states.RETRYING, True),
    (states.RETRYING, states.DELIVERING, True),
    (states.FAILED, states.PENDING, True),
    (states.SUCCEEDED, states.DELIVERING, False),
    (states.CANCELLED, states.PENDING, False),
    (states.PENDING, states.SUCCEEDED, False),
])
def test_transitions(current: str, new: str, allowed: bool) -> None:
    assert states.can_move(current, new) is allowed


def test_sql_refuses_an_unknown_state() -> None:
    with pytest.raises(ValueError, match="not a delivery state"):
        states.sql("done")


def test_the_openapi_glossary_lists_the_delivery_states_in_order() -> None:
    from kernel.openapi_docs import DELIVERY_STATUSES

    assert tuple(DELIVERY_STATUSES) == states.ALL
