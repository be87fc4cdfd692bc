"""The first stages: a request becomes a profile (history or seeds, weighted), then a context in the models' terms."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

import numpy as np

from services.core.engines.base import SearchEngine
from services.recs.catalog import CatalogView
from services.recs.interactions import InteractionStore, InteractionType
from services.recs.models import RecsArtefacts
from services.recs.settings import RecsSettings
from services.recs.types import Mode, Profile, RecContext, RecommendationRequest, Vector


def taste_types(settings: RecsSettings) -> list[InteractionType]:
    """The interaction types that say something about taste (weight > 0); the others never exclude an item."""
    weights = settings.type_weights.model_dump()
    return [t for t in InteractionType if weights[t.value] > 0]


def recency_weights(n: int, half_life: float) -> np.ndarray:
    """Weights of n entries, oldest first: the most recent weighs 1, one `half_life` entries before it 0.5."""
    age = np.arange(n - 1, -1, -1, dtype=np.float64)
    return np.power(0.5, age / half_life)


class ProfileBuilder:
    """Request -> Profile. User mode reads the user's recent history from the store; seeds mode takes the seeds
    in the order given (the last one the most recent). Items the user engaged with, seeds, negatives and
    explicit exclusions are all excluded from the answer."""

    def __init__(self, store: InteractionStore, settings: RecsSettings) -> None:
        self._store = store
        self._settings = settings
        self._types = taste_types(settings)
        self._type_weights = settings.type_weights.model_dump()

    def run(self, request: RecommendationRequest) -> Profile:
        at = request.at or datetime.now(UTC)
        s = self._settings
        excluded: set[str] = set(request.exclude_item_ids) | set(request.negative_item_ids)
        if request.seed_item_ids:
            if request.user_id is not None:
                excluded |= self._store.interacted_items(request.user_id, types=self._types)
            entries = [(item, 1.0) for item in request.seed_item_ids[-s.history_limit :]]
            excluded |= set(request.seed_item_ids)
            mode = Mode.SEEDS
        else:
            history = []
            if request.user_id is not None:
                # one read for both (one GET of the user's document on OpenSearch, not two)
                user = self._store.user_interactions(
                    request.user_id, limit=s.history_limit, until=at, types=self._types
                )
                excluded |= user.items
                history = user.history
            entries = [(i.item_id, self._type_weights[i.type.value]) for i in history]
            excluded |= {item for item, _ in entries}
            mode = Mode.USER
        recency = recency_weights(len(entries), s.recency_half_life)
        weights: dict[str, float] = {}
        for (item, type_weight), r in zip(entries, recency, strict=True):
            weights[item] = weights.pop(item, 0.0) + type_weight * float(r)  # re-inserted: ordered by last seen
        items = tuple(weights)
        return Profile(
            mode=mode,
            user_id=request.user_id,
            items=items,
            weights=tuple(weights.values()),
            recent=tuple(reversed(items))[: s.last_items],
            negatives=tuple(dict.fromkeys(request.negative_item_ids)),
            excluded=frozenset(excluded),
            at=at.timestamp(),
            history_length=len(entries),
        )


@runtime_checkable
class ItemVectors(Protocol):
    """Item embeddings by id; ids without a vector (unknown, deleted) are left out of the answer."""

    def get(self, ids: Sequence[str]) -> dict[str, Vector]: ...


class EngineItemVectors:
    """Item vectors read from the search engine through the SearchEngine contract, with a bounded LRU cache.
    A re-embedded item keeps its cached vector until it falls out of the cache or `clear()` is called."""

    def __init__(self, engine: SearchEngine, alias: str, cache_size: int = 100_000) -> None:
        self._engine = engine
        self._alias = alias
        self._cache: OrderedDict[str, Vector] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def get(self, ids: Sequence[str]) -> dict[str, Vector]:
        out: dict[str, Vector] = {}
        missing: list[str] = []
        with self._lock:
            for item in ids:
                vec = self._cache.get(item)
                if vec is None:
                    missing.append(item)
                else:
                    self._cache.move_to_end(item)
                    out[item] = vec
        if missing:
            fetched = {
                doc.item.id: np.asarray(doc.vector, dtype=np.float32)
                for doc in self._engine.get(self._alias, list(dict.fromkeys(missing)), with_vectors=True)
                if doc.vector is not None
            }
            out.update(fetched)
            with self._lock:
                self._cache.update(fetched)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return out

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()


def _unit(vec: np.ndarray) -> Vector | None:
    norm = float(np.linalg.norm(vec))
    return (vec / norm).astype(np.float32) if norm > 1e-9 else None


class UserVectorBuilder:
    """The user (or seed) vector: the recency- and type-weighted mean of the profile's item vectors, minus
    `negative_weight` times the mean of the negatives' vectors; unit length. None when no item has a vector."""

    def __init__(self, vectors: ItemVectors | None, settings: RecsSettings) -> None:
        self._vectors = vectors
        self._negative_weight = settings.negative_weight

    def run(self, profile: Profile) -> tuple[Vector | None, Vector | None]:
        """(user vector, vector of the most recent item)."""
        if self._vectors is None or not profile.items:
            return None, None
        found = self._vectors.get([*profile.items, *profile.negatives])
        pairs = [(found[i], w) for i, w in zip(profile.items, profile.weights, strict=True) if i in found]
        if not pairs:
            return None, None
        weights = np.asarray([w for _, w in pairs], dtype=np.float64)
        mean = (np.vstack([v for v, _ in pairs]) * weights[:, None]).sum(axis=0) / max(weights.sum(), 1e-9)
        negatives = [found[i] for i in profile.negatives if i in found]
        if negatives and self._negative_weight > 0:
            mean = _unit(mean)  # compare like with like: both means at unit length
            neg = _unit(np.vstack(negatives).mean(axis=0))
            if mean is not None and neg is not None:
                mean = mean - self._negative_weight * 0.5 * neg
        last = found.get(profile.items[-1])
        return (None if mean is None else _unit(mean)), last


class ContextEncoder:
    """Profile -> RecContext: the profile's items as rows of the models, an exclusion mask, and the vectors."""

    def __init__(self, artefacts: RecsArtefacts, vectors: UserVectorBuilder, settings: RecsSettings) -> None:
        self._artefacts = artefacts
        self._vectors = vectors
        self._decay = settings.last_items_decay

    def run(self, profile: Profile, catalog: CatalogView | None = None) -> RecContext:
        index = self._artefacts.items
        rows = index.lookup(profile.items)
        weights = np.asarray(profile.weights, dtype=np.float32)
        known = rows >= 0
        recent = index.lookup(profile.recent)
        recent_w = np.power(self._decay, np.arange(len(recent))).astype(np.float32)
        recent_known = recent >= 0
        mask = np.zeros(len(index), dtype=bool)
        excluded = index.lookup(profile.excluded)
        mask[excluded[excluded >= 0]] = True
        negatives = index.lookup(profile.negatives)
        user_vector, last_vector = self._vectors.run(profile)
        return RecContext(
            profile=profile,
            rows=rows[known],
            row_weights=weights[known],
            recent_rows=recent[recent_known],
            recent_weights=recent_w[recent_known],
            negative_rows=negatives[negatives >= 0],
            excluded_mask=mask,
            user_vector=user_vector,
            last_vector=last_vector,
            catalog=catalog,
        )
