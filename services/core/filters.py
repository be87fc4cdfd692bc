"""The neutral filter language. Stages build and pass these objects; each engine adapter translates them.

JSON form (what the API accepts):
    {"term": {"brand": "Acme"}}           {"terms": {"tags": ["a", "b"]}}
    {"range": {"price": {"gte": 1, "lt": 9}}}   {"exists": "brand"}
    {"and": [f, ...]}   {"or": [f, ...]}   {"not": f}
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, overload, runtime_checkable

from services.core.domain import CatalogSchema, FieldKind, Item
from services.core.errors import FilterError

Scalar = str | int | float | bool | datetime
MAX_FILTER_DEPTH = 8
MAX_TERMS = 1024


@dataclass(frozen=True)
class Term:
    field: str
    value: Scalar


@dataclass(frozen=True)
class Terms:
    field: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class Range:
    field: str
    gte: float | datetime | None = None
    gt: float | datetime | None = None
    lte: float | datetime | None = None
    lt: float | datetime | None = None


@dataclass(frozen=True)
class Exists:
    field: str


@dataclass(frozen=True)
class And:
    filters: tuple[Filter, ...]


@dataclass(frozen=True)
class Or:
    filters: tuple[Filter, ...]


@dataclass(frozen=True)
class Not:
    filter: Filter


Filter = Term | Terms | Range | Exists | And | Or | Not


# ---- combining filters (what stages add to a caller's filter) -------------------------------------------


def only_visible(flt: Filter | None) -> Filter:
    """The caller's filter and `available = true`: what suggest and recommendations may show."""
    return Term("available", True) if flt is None else And((Term("available", True), flt))


@overload
def excluding(flt: Filter, removed: Filter | None) -> Filter: ...
@overload
def excluding(flt: Filter | None, removed: Filter | None) -> Filter | None: ...
def excluding(flt: Filter | None, removed: Filter | None) -> Filter | None:
    """`flt` and nothing `removed` admits (either may be None)."""
    if removed is None:
        return flt
    return Not(removed) if flt is None else And((flt, Not(removed)))


@overload
def excluding_ids(flt: Filter, ids: Collection[str]) -> Filter: ...
@overload
def excluding_ids(flt: Filter | None, ids: Collection[str]) -> Filter | None: ...
def excluding_ids(flt: Filter | None, ids: Collection[str]) -> Filter | None:
    """`flt` and none of `ids`, as one terms clause: applied inside a query, exclusion never costs a result."""
    return excluding(flt, Terms("id", tuple(ids))) if ids else flt


@runtime_checkable
class HiddenItems(Protocol):
    """What the business rules take out of every answer (hide rules), for the endpoints that are not a search:
    suggest, similar items and recommendations put it in their engine queries, so an answer still fills up.
    `text` is the query (None where there is none: only rules without a query apply then)."""

    def hidden(self, text: str | None, filter: Filter | None) -> Filter | None: ...


def without_hidden(flt: Filter | None, hidden: HiddenItems | None, text: str | None) -> Filter | None:
    """`flt` and nothing the active hide rules take out (the filter unchanged when no rule hides anything)."""
    return flt if hidden is None else excluding(flt, hidden.hidden(text, flt))


def parse_filter(data: Any, schema: CatalogSchema | None = None, path: str = "filter") -> Filter:
    """Turn the JSON form into typed filters, checking field names and value types against the schema."""
    fields = (schema or CatalogSchema()).filter_fields()
    return _parse(data, fields, path, 0)


def _parse(data: Any, fields: dict[str, FieldKind], path: str, depth: int) -> Filter:
    if depth > MAX_FILTER_DEPTH:
        raise FilterError(path, f"nested deeper than {MAX_FILTER_DEPTH} levels")
    if not isinstance(data, Mapping) or len(data) != 1:
        raise FilterError(path, "must be an object with exactly one operator: term, terms, range, exists, and, or, not")
    ((op, arg),) = data.items()
    where = f"{path}.{op}"
    if op in ("and", "or"):
        if not isinstance(arg, list) or not arg:
            raise FilterError(where, "must be a non-empty list of filters")
        parts = tuple(_parse(a, fields, f"{where}[{i}]", depth + 1) for i, a in enumerate(arg))
        return And(parts) if op == "and" else Or(parts)
    if op == "not":
        return Not(_parse(arg, fields, where, depth + 1))
    if op == "exists":
        name = arg.get("field") if isinstance(arg, Mapping) else arg
        return Exists(_field(name, fields, where))
    if op not in ("term", "terms", "range"):
        raise FilterError(path, f"unknown operator {op!r}")
    if not isinstance(arg, Mapping) or len(arg) != 1:
        raise FilterError(where, "must be an object with one field name")
    ((name, value),) = arg.items()
    kind = fields.get(name) if isinstance(name, str) else None
    field = _field(name, fields, where)
    assert kind is not None
    if op == "term":
        return Term(field, coerce_value(value, kind, f"{where}.{field}"))
    if op == "terms":
        if not isinstance(value, list) or not value or len(value) > MAX_TERMS:
            raise FilterError(f"{where}.{field}", f"must be a list of 1 to {MAX_TERMS} values")
        return Terms(field, tuple(coerce_value(v, kind, f"{where}.{field}") for v in value))
    return _parse_range(field, kind, value, f"{where}.{field}")


def _field(name: Any, fields: dict[str, FieldKind], where: str) -> str:
    if not isinstance(name, str) or name not in fields:
        known = ", ".join(sorted(fields))
        raise FilterError(where, f"unknown field {name!r}; filterable fields: {known}")
    return name


def _parse_range(field: str, kind: FieldKind, value: Any, where: str) -> Range:
    if kind not in (FieldKind.NUMBER, FieldKind.DATE):
        raise FilterError(where, f"range needs a number or date field, {field!r} is {kind.value}")
    if not isinstance(value, Mapping) or not value or set(value) - {"gte", "gt", "lte", "lt"}:
        raise FilterError(where, "must be an object with some of gte, gt, lte, lt")
    bounds = {k: coerce_value(v, kind, f"{where}.{k}") for k, v in value.items()}
    return Range(field, **bounds)  # type: ignore[arg-type]


def coerce_value(value: Any, kind: FieldKind, where: str) -> Any:
    """Check one filter value against its field's kind; dates become aware datetimes."""
    if kind is FieldKind.KEYWORD and isinstance(value, str):
        return value
    if kind is FieldKind.BOOLEAN and isinstance(value, bool):
        return value
    if kind is FieldKind.NUMBER and isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer of 400 digits
            number = math.inf
        if not math.isfinite(number):  # 1e400 parses as infinity; the engines refuse it (a 500 on OpenSearch)
            raise FilterError(where, "expected a finite number")
        return number
    if kind is FieldKind.DATE:
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                pass
            else:
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise FilterError(where, f"expected a {kind.value} value, got {value!r}")


def filter_fields(flt: Filter | None) -> set[str]:
    """Every field a filter reads (used by adapters to check that they index it)."""
    match flt:
        case None:
            return set()
        case Term(f) | Terms(f) | Range(f) | Exists(f):
            return {f}
        case And(parts) | Or(parts):
            return set().union(*(filter_fields(p) for p in parts))
        case Not(inner):
            return filter_fields(inner)
    raise TypeError(flt)


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
    """Whether an item passes a filter, with the engines' semantics: a list field matches if any value does; a
    missing field matches no term or range and fails `exists`. The one in-memory evaluator, for stages that hold
    items already (rules' targets, recommendation candidates); retrieval filters inside the engine."""
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
