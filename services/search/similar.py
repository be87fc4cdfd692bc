"""Similar items: the nearest items to one item's stored vector, the item itself excluded in the engine."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.core.domain import Item
from services.core.engines.base import SearchEngine
from services.core.errors import NotFoundError
from services.core.filters import Filter, HiddenItems, excluding_ids, without_hidden
from services.search.types import new_query_id


@dataclass(frozen=True, slots=True)
class SimilarItem:
    id: str
    item: Item
    score: float  # cosine similarity to the seed item
    rank: int


@dataclass(frozen=True, slots=True)
class SimilarResult:
    item_id: str
    items: list[SimilarItem]
    query_id: str = field(default_factory=new_query_id)


class SimilarItems:
    def __init__(self, engine: SearchEngine, alias: str, hidden: HiddenItems | None = None) -> None:
        self._engine = engine
        self._alias = alias
        self._hidden = hidden

    @property
    def name(self) -> str:
        return "vector-neighbours"

    def run(
        self, item_id: str, *, size: int = 10, filter: Filter | None = None, query_id: str | None = None
    ) -> SimilarResult:
        stored = self._engine.get(self._alias, [item_id], with_vectors=True)
        if not stored or stored[0].vector is None:
            raise NotFoundError("item", item_id)
        # the item itself and what hide rules hide, left out inside the k-NN search: never a result short
        allowed = excluding_ids(without_hidden(filter, self._hidden, None), [item_id])
        hits = self._engine.vector_search(self._alias, stored[0].vector, k=size, filter=allowed)
        items = [
            SimilarItem(h.id, h.item, h.score, rank)
            for rank, h in enumerate((h for h in hits if h.id != item_id), start=1)
        ]
        return SimilarResult(item_id, items, query_id or new_query_id())
