"""Facets: value counts per keyword field over the final result list (every candidate, not one page).

Counted here rather than by the engine: with a vector leg the result set of a hybrid query is the fused
candidate list, not "every document that matches", and the counts must describe the list the user pages
through, whichever engine answered.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from services.core.domain import CatalogSchema, FieldKind, Item
from services.core.errors import ValidationError
from services.core.filters import field_values
from services.search.types import FacetValue

DEFAULT_FACETS = ("categories", "brand", "tags")


def facet_fields(schema: CatalogSchema) -> tuple[str, ...]:
    """Fields a facet may count: the keyword fields (but `id`) and the declared keyword attributes."""
    return tuple(f for f, kind in schema.filter_fields().items() if kind is FieldKind.KEYWORD and f != "id")


def _values(item: Item, field: str) -> list[str]:
    return list(dict.fromkeys(str(v) for v in field_values(item, field)))  # an item counts once per value


class FacetCounter:
    def __init__(self, schema: CatalogSchema, *, size: int = 10) -> None:
        self._allowed = facet_fields(schema)
        self._size = size

    @property
    def fields(self) -> tuple[str, ...]:
        return self._allowed

    def check(self, fields: Sequence[str]) -> tuple[str, ...]:
        for f in fields:
            if f not in self._allowed:
                raise ValidationError("facets", f"unknown facet field {f!r}; facet fields: {', '.join(self._allowed)}")
        return tuple(dict.fromkeys(fields))

    def run(self, items: Iterable[Item], fields: Sequence[str]) -> dict[str, list[FacetValue]]:
        """The `size` most frequent values of each field, by count then value."""
        chosen = self.check(fields)
        if not chosen:
            return {}
        counters: dict[str, Counter[str]] = {f: Counter() for f in chosen}
        for item in items:
            for f in chosen:
                counters[f].update(_values(item, f))
        return {
            f: [FacetValue(v, n) for v, n in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[: self._size]]
            for f, c in counters.items()
        }
