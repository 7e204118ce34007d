"""Reading Prometheus' text exposition format in tests."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    found: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(parsed: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    """The sample's value; 0 when the series does not exist (yet)."""
    return parsed.get((name, frozenset(labels.items())), 0.0)
