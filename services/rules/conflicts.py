"""Conflicts between rules: two enabled rules whose scopes and validity windows overlap and whose actions
contradict each other or would be merged without anyone choosing how. They are reported (the API answers
409 with the rules in the way), never merged silently.

Scopes overlap when some search could be in both: a rule without a query (or without a filter context)
applies to every query (every filter); two exact queries overlap when equal; an exact query and a contained
one when the exact one contains it; two contained queries always may (a query can contain both). Two filter
contexts overlap unless they are `term` filters on the same field with different values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.rules.model import Rule, RuleIn, When


@dataclass(frozen=True, slots=True)
class Conflict:
    rule_id: str
    name: str
    reason: str


def _queries_overlap(a: When, b: When) -> bool:
    if a.query is None or b.query is None:
        return True
    if a.match == "exact" and b.match == "exact":
        return a.query == b.query
    if a.match == "exact":
        return f" {b.query} " in f" {a.query} "
    if b.match == "exact":
        return f" {a.query} " in f" {b.query} "
    return True


def _single_term(flt: dict[str, Any]) -> tuple[str, Any] | None:
    term = flt.get("term") if len(flt) == 1 else None
    if isinstance(term, dict) and len(term) == 1:
        ((field, value),) = term.items()
        return str(field), value
    return None


def _filters_overlap(a: When, b: When) -> bool:
    if a.filter is None or b.filter is None or a.filter == b.filter:
        return True
    ta, tb = _single_term(a.filter), _single_term(b.filter)
    return not (ta and tb and ta[0] == tb[0] and ta[1] != tb[1])


def _windows_overlap(a: RuleIn, b: RuleIn) -> bool:
    lo = max((t for t in (a.valid_from, b.valid_from) if t is not None), default=None)
    hi_candidates: list[datetime] = [t for t in (a.valid_until, b.valid_until) if t is not None]
    hi = min(hi_candidates, default=None)
    return lo is None or hi is None or lo < hi


def overlap(a: RuleIn, b: RuleIn) -> bool:
    return (
        a.enabled
        and b.enabled
        and _windows_overlap(a, b)
        and _queries_overlap(a.when, b.when)
        and _filters_overlap(a.when, b.when)
    )


def _same_targets(a: RuleIn, b: RuleIn) -> set[str] | bool:
    """Items both rules name, or True when both target the same filter."""
    shared = set(a.items) & set(b.items)
    if shared:
        return shared
    return a.target is not None and a.target == b.target


def _why(a: RuleIn, b: RuleIn) -> str | None:
    """Why `a` and `b` (overlapping in scope and time) conflict, or None."""
    pair = {a.action, b.action}
    if pair == {"pin"}:
        shared = set(a.items) & set(b.items)
        if shared:
            return f"both pin {sorted(shared)}"
        assert a.position is not None and b.position is not None
        a_end, b_end = a.position + len(a.items) - 1, b.position + len(b.items) - 1
        if a.position <= b_end and b.position <= a_end:
            return f"both pin items at positions {max(a.position, b.position)}-{min(a_end, b_end)}"
        return None
    if pair == {"pin", "hide"}:
        shared = set(a.items) & set(b.items)
        return f"one pins and the other hides {sorted(shared)}" if shared else None
    if pair in ({"boost", "bury"}, {"boost"}, {"bury"}):
        same = _same_targets(a, b)
        if not same:
            return None
        what = sorted(same) if isinstance(same, set) else "the same target filter"
        if len(pair) == 2:
            return f"one boosts and the other buries {what}"
        return f"both {a.action} {what} (their amounts would add up; use one rule)"
    if pair == {"diversity"} and a.field == b.field:
        return f"two diversity caps on {a.field!r}"
    if pair in ({"mmr"}, {"freshness"}):
        return f"two {a.action} rules"
    return None


def find_conflicts(rule: RuleIn, existing: Sequence[Rule], *, rule_id: str | None = None) -> list[Conflict]:
    """The existing rules that `rule` (new, or replacing `rule_id`) conflicts with."""
    found = []
    for other in existing:
        if other.id == rule_id or not overlap(rule, other):
            continue
        why = _why(rule, other)
        if why is not None:
            found.append(Conflict(other.id, other.name, why))
    return found
