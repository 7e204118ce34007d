"""The chain of an exception and what caused it."""

from __future__ import annotations

from kernel.causes import exception_chain


def _raised(make) -> BaseException:
    try:
        make()
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        return exc
    raise AssertionError("nothing raised")


def test_the_explicit_cause_comes_before_the_context() -> None:
    inner = OSError("refused")

    def make() -> None:
        try:
            raise KeyError("context")
        except KeyError:
            raise RuntimeError("outer") from inner

    chain = exception_chain(_raised(make))
    assert [type(item) for item in chain] == [RuntimeError, OSError]
    assert chain[1] is inner


def test_the_context_is_followed_without_a_cause() -> None:
    def make() -> None:
        try:
            raise ValueError("first")
        except ValueError:
            raise TypeError("second")  # noqa: B904 - the implicit context is the point

    assert [type(item) for item in exception_chain(_raised(make))] == [TypeError, ValueError]


def test_a_cycle_ends_the_chain() -> None:
    first, second = ValueError("a"), ValueError("b")
    first.__cause__, second.__cause__ = second, first
    assert exception_chain(first) == [first, second]
