"""Neutral filters -> OpenSearch query DSL. The only place that knows how filters look to OpenSearch."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.core.filters import And, Exists, Filter, Not, Or, Range, Term, Terms


def _value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def to_dsl(flt: Filter) -> dict[str, Any]:
    match flt:
        case Term(field, value):
            return {"term": {field: _value(value)}}
        case Terms(field, values):
            return {"terms": {field: [_value(v) for v in values]}}
        case Range(field, gte, gt, lte, lt):
            bounds = {k: _value(v) for k, v in (("gte", gte), ("gt", gt), ("lte", lte), ("lt", lt)) if v is not None}
            return {"range": {field: bounds}}
        case Exists(field):
            return {"exists": {"field": field}}
        case And(parts):
            return {"bool": {"filter": [to_dsl(p) for p in parts]}}
        case Or(parts):
            return {"bool": {"should": [to_dsl(p) for p in parts], "minimum_should_match": 1}}
        case Not(inner):
            return {"bool": {"must_not": [to_dsl(inner)]}}
    raise TypeError(flt)


def filter_clause(flt: Filter | None) -> list[dict[str, Any]]:
    return [] if flt is None else [to_dsl(flt)]
