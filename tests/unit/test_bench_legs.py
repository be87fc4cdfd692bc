"""The query benchmark counts what the suggester's legs did, by their reason codes, in words that do not name the
typed text."""

from __future__ import annotations

from collections import Counter

from services.bench.query import leg_outcome, legs_lines
from services.search.types import LegReport


def test_leg_outcomes_are_counted_without_the_typed_text() -> None:
    reports = [
        LegReport("prefix", 12, 1.2),
        LegReport("vector", 0, 0.9),
        LegReport("vector", 0, 0.0, "query vector not cached yet (embedding it)", "no_query_vector"),
        LegReport("vector", 0, 0.0, "the vector of 'The' found nothing above 0.3 12 s ago", "vector_found_nothing"),
        LegReport("vector", 0, 0.0, "the vector of 'Star' found nothing above 0.3 3 s ago", "vector_found_nothing"),
        LegReport("fuzzy", 0, 0.0, "the prefix leg found 20", "prefix_found_enough"),
        LegReport("vector", 0, 12.0, "over its 8 ms budget", "over_budget"),
        LegReport("vector", 0, 0.0, "a reason from a newer suggester"),
    ]
    counts = Counter(leg_outcome(r) for r in reports)
    assert counts == {
        "prefix: ran, found items": 1,
        "vector: ran, found nothing": 1,
        "vector: skipped, no vector held yet": 1,
        "vector: skipped, its held vector found nothing a moment ago": 2,
        "fuzzy: skipped, the prefix leg found enough": 1,
        "vector: skipped, over its budget": 1,
        "vector: skipped, no reason given": 1,
    }


def test_the_report_says_what_the_legs_did_only_when_counted() -> None:
    counted = {"results": {"suggest": {"service": {"n": 3, "legs": {"vector: ran, found items": 2}}}}}
    assert legs_lines(counted)[0] == (
        "Suggest's legs over the 3 measured keystrokes of the service in-process: vector: ran, found items 2."
    )
    assert legs_lines({"results": {"suggest": {"service": {"n": 3}}}}) == []  # a run from before the count
