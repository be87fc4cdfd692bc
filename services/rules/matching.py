"""Neutral filters evaluated on items in memory (a rule's target, a pinned item against the search's filter),
a filter context matched against a search's filter, and a rule's query matched against the search's text.

This reads `services.core.filters` objects and `Item` fields only: no engine is involved.
"""

from __future__ import annotations

from services.core.filters import And, Filter, field_values, matches
from services.search.types import fold, normalise_text

__all__ = ["field_values", "filter_includes", "matches", "query_matches"]  # the evaluator lives in core.filters


def _conjuncts(flt: Filter) -> list[Filter]:
    if isinstance(flt, And):
        return [c for part in flt.filters for c in _conjuncts(part)]
    return [flt]


def filter_includes(search_filter: Filter | None, context: Filter) -> bool:
    """Whether a search's filter includes a rule's filter context: every part of the context (an `and` is
    split into its parts) is one of the search filter's top-level `and` parts, or the filter itself."""
    if search_filter is None:
        return False
    have = _conjuncts(search_filter)
    return all(part in have for part in _conjuncts(context))


def query_matches(rule_query: str, match: str, text: str) -> bool:
    """`rule_query` is normalised and case-folded already (see `When`); `contains` matches whole words. Both
    sides are folded as the engines fold text: a rule for "misérables" holds for "miserables", which finds
    the same items."""
    q, rq = fold(normalise_text(text)), fold(rule_query)
    if match == "exact":
        return q == rq
    return f" {rq} " in f" {q} "
