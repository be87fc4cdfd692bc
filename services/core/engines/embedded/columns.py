"""Filter columns for the embedded engine and the translator from neutral filters to a row mask.

The mask is the one filter translation of the embedded engine: the vector index takes it as a Faiss
selector (filtering inside the graph walk) and the text index as a set of allowed rows. Rows of superseded
or deleted revisions stay in the postings until the next rebuild; every mask is ANDed with `live`.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from services.core import filters
from services.core.domain import FieldKind, Item
from services.core.filters import And, Exists, Filter, Not, Or, Range, Term, Terms

Mask = npt.NDArray[np.bool_]


def _scalar(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, bool):
        return float(value)
    return value


def field_values(item: Item, field: str) -> list[Any]:
    """The item's values of a field as the columns store them (dates as timestamps, booleans as numbers)."""
    return [_scalar(v) for v in filters.field_values(item, field)]


class FilterColumns:
    def __init__(self, fields: dict[str, FieldKind]) -> None:
        self._kinds = fields
        self._capacity = 1024
        self.live: Mask = np.zeros(self._capacity, dtype=bool)
        self._present = {f: np.zeros(self._capacity, dtype=bool) for f in fields}
        self._numbers = {f: np.full(self._capacity, np.nan) for f, k in fields.items() if k is not FieldKind.KEYWORD}
        self._postings: dict[str, dict[Any, list[int]]] = {
            f: defaultdict(list) for f, k in fields.items() if k is FieldKind.KEYWORD
        }

    @property
    def size(self) -> int:
        return self._capacity

    def _grow(self, row: int) -> None:
        if row < self._capacity:
            return
        new = max(self._capacity * 2, row + 1)
        self.live = np.concatenate([self.live, np.zeros(new - self._capacity, dtype=bool)])
        for f, arr in self._present.items():
            self._present[f] = np.concatenate([arr, np.zeros(new - self._capacity, dtype=bool)])
        for f, num in self._numbers.items():
            self._numbers[f] = np.concatenate([num, np.full(new - self._capacity, np.nan)])
        self._capacity = new

    def add(self, row: int, item: Item) -> None:
        self._grow(row)
        self.live[row] = True
        for field, kind in self._kinds.items():
            values = field_values(item, field)
            if not values:
                continue
            self._present[field][row] = True
            if kind is FieldKind.KEYWORD:
                for v in values:
                    self._postings[field][v].append(row)
            else:
                self._numbers[field][row] = values[0]

    def numbers(self, field: str) -> npt.NDArray[np.float64]:
        """The column of a number, date or boolean field, by row (NaN where a row has no value)."""
        return self._numbers[field]

    def remove(self, row: int) -> None:
        if row < self._capacity:
            self.live[row] = False

    def mask(self, flt: Filter | None) -> Mask:
        return self.live.copy() if flt is None else self._eval(flt) & self.live

    def _eval(self, flt: Filter) -> Mask:
        match flt:
            case Term(field, value):
                return self._match(field, [value])
            case Terms(field, values):
                return self._match(field, list(values))
            case Exists(field):
                return self._present[field].copy()
            case Range(field, gte, gt, lte, lt):
                col = self._numbers[field]
                out: Mask = ~np.isnan(col)
                with np.errstate(invalid="ignore"):
                    for bound, op in (
                        (gte, np.greater_equal),
                        (gt, np.greater),
                        (lte, np.less_equal),
                        (lt, np.less),
                    ):
                        if bound is not None:
                            out &= op(col, _scalar(bound))
                return out
            case And(parts):
                out = np.ones(self._capacity, dtype=bool)
                for p in parts:
                    out &= self._eval(p)
                return out
            case Or(parts):
                out = np.zeros(self._capacity, dtype=bool)
                for p in parts:
                    out |= self._eval(p)
                return out
            case Not(inner):
                return ~self._eval(inner)
        raise TypeError(flt)

    def _match(self, field: str, values: list[Any]) -> Mask:
        out = np.zeros(self._capacity, dtype=bool)
        if field in self._postings:
            postings = self._postings[field]
            for v in values:
                rows = postings.get(v)
                if rows:
                    out[rows] = True
        else:
            col = self._numbers[field]
            out |= np.isin(col, [_scalar(v) for v in values])
        return out
