"""Neutral filters evaluated on items in memory (a rule's target, a pinned item against the search's filter),
a filter context matched against a search's filter, and a rule's query matched against the search's text.

This reads `services.core.filters` objects and `Item` fields only: no engine is involved.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.core.domain import Item
from services.core.filters import And, Exists, Filter, Not, Or, Range, Term, Terms
from services.search.types import normalise_text


def field_values(item: Item, field: str) -> list[Any]:
    """An item's values of a filterable field, as a list (empty when it has none)."""
    if field.startswith("attributes."):
        raw = item.attributes.get(field.removeprefix("attributes."))
    else:
        raw = getattr(item, field, None)
    if raw is None:
        return []
    return list(raw) if isinstance(raw, list) else [raw]


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b if isinstance(a, bool) and isinstance(b, bool) else False
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    return bool(a == b)


def _in_range(value: Any, r: Range) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float | datetime):
        return False
    v: Any = float(value) if isinstance(value, int | float) else value
    try:
        return (
            (r.gte is None or v >= r.gte)
            and (r.gt is None or v > r.gt)
            and (r.lte is None or v <= r.lte)
            and (r.lt is None or v < r.lt)
        )
    except TypeError:  # a date bound against a number, or the reverse
        return False


def matches(flt: Filter | None, item: Item) -> bool:
    """Whether an item passes a filter, with the engines' semantics (a list field matches if any value does)."""
    match flt:
        case None:
            return True
        case Term(f, value):
            return any(_equal(v, value) for v in field_values(item, f))
        case Terms(f, values):
            return any(_equal(v, w) for v in field_values(item, f) for w in values)
        case Range():
            return any(_in_range(v, flt) for v in field_values(item, flt.field))
        case Exists(f):
            return bool(field_values(item, f))
        case And(parts):
            return all(matches(p, item) for p in parts)
        case Or(parts):
            return any(matches(p, item) for p in parts)
        case Not(inner):
            return not matches(inner, item)
    raise TypeError(flt)


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
    """`rule_query` is normalised and case-folded already (see `When`); `contains` matches whole words."""
    q = normalise_text(text).casefold()
    if match == "exact":
        return q == rule_query
    return f" {rule_query} " in f" {q} "
