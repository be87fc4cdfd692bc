"""An engine view pinned to one index version of one alias: every read names that version.

The query service embeds query text with the model of the version it searches; pinning makes the search
hit exactly that version even if the alias moves to a version of another model meanwhile.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from services.core.engines.base import SUGGEST_POPULARITY_WEIGHT, Hit, SearchEngine, StoredDocument, Vector
from services.core.filters import Filter


class PinnedEngine:
    def __init__(self, engine: SearchEngine, alias: str, version: int) -> None:
        self._engine = engine
        self._alias = alias
        self.version = version

    def _v(self, alias: str, version: int | None) -> int | None:
        return self.version if alias == self._alias and version is None else version

    def keyword_search(
        self,
        alias: str,
        text: str,
        *,
        k: int,
        boosts: Mapping[str, float] | None = None,
        filter: Filter | None = None,
        version: int | None = None,
        terms: Mapping[str, float] | None = None,
    ) -> list[Hit]:
        return self._engine.keyword_search(
            alias, text, k=k, boosts=boosts, filter=filter, version=self._v(alias, version), terms=terms
        )

    def vector_search(
        self, alias: str, vector: Vector, *, k: int, filter: Filter | None = None, version: int | None = None
    ) -> list[Hit]:
        return self._engine.vector_search(alias, vector, k=k, filter=filter, version=self._v(alias, version))

    def prefix_suggest(
        self,
        alias: str,
        text: str,
        *,
        k: int,
        filter: Filter | None = None,
        version: int | None = None,
        popularity_weight: float = SUGGEST_POPULARITY_WEIGHT,
    ) -> list[Hit]:
        return self._engine.prefix_suggest(
            alias, text, k=k, filter=filter, version=self._v(alias, version), popularity_weight=popularity_weight
        )

    def state_token(self, alias: str, *, version: int | None = None) -> Hashable | None:
        return self._engine.state_token(alias, version=self._v(alias, version))

    def top_by_field(
        self, alias: str, field: str, *, k: int, filter: Filter | None = None, version: int | None = None
    ) -> list[Hit]:
        return self._engine.top_by_field(alias, field, k=k, filter=filter, version=self._v(alias, version))

    def get(
        self, alias: str, ids: Sequence[str], *, with_vectors: bool = False, version: int | None = None
    ) -> list[StoredDocument]:
        return self._engine.get(alias, ids, with_vectors=with_vectors, version=self._v(alias, version))

    def get_vectors(self, alias: str, ids: Sequence[str], *, version: int | None = None) -> dict[str, Vector]:
        return self._engine.get_vectors(alias, ids, version=self._v(alias, version))

    def count(self, alias: str, *, version: int | None = None) -> int:
        return self._engine.count(alias, version=self._v(alias, version))

    def __getattr__(self, name: str) -> Any:  # everything else (writes, versions) goes through unchanged
        return getattr(self._engine, name)
