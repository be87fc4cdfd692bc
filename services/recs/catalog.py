"""A request's view of the catalog: which candidates it may return (present, available, passing its filter).

Items are read from the engine through the SearchEngine contract, at most once per request: the sources that
check their candidates against the request's filter and the final CatalogGuard share the fetched items.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from services.core.domain import Item
from services.core.engines.base import SearchEngine
from services.core.filters import Filter, matches


class CatalogView:
    def __init__(self, engine: SearchEngine, alias: str, flt: Filter | None = None, *, scan_limit: int = 5000) -> None:
        self._engine = engine
        self._alias = alias
        self.filter = flt
        # How far down a ranked list a source looks for items that pass the filter (bounds a request's cost
        # when the filter admits few of the items the interaction models rank high).
        self.scan_limit = scan_limit
        self._items: dict[str, Item | None] = {}
        self._lock = threading.Lock()

    def items(self, ids: Sequence[str]) -> dict[str, Item]:
        """The catalog's items among `ids` (ids it does not hold are left out)."""
        with self._lock:
            missing = [i for i in dict.fromkeys(ids) if i not in self._items]
        if missing:
            found: dict[str, Item | None] = dict.fromkeys(missing)
            for doc in self._engine.get(self._alias, missing):
                found[doc.item.id] = doc.item
            with self._lock:
                self._items.update(found)
        with self._lock:
            return {i: item for i in ids if (item := self._items.get(i)) is not None}

    def admitted(self, ids: Sequence[str]) -> list[str]:
        """The ids, in order, of items the catalog holds, offers (available) and the filter lets through."""
        held = self.items(ids)
        out = []
        for i in ids:
            item = held.get(i)
            if item is not None and item.available and (self.filter is None or matches(self.filter, item)):
                out.append(i)
        return out
