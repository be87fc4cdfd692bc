"""The typed values that pass between the stages of the recommendation pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from services.core.errors import ValidationError
from services.core.filters import Filter

if TYPE_CHECKING:
    from services.recs.catalog import CatalogView

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Vector = npt.NDArray[np.float32]

MAX_K = 1000
MAX_SEEDS = 1000


class Mode(StrEnum):
    """How a response was made: from the user's history, from seeds, or a cold-start fallback."""

    USER = "user"
    SEEDS = "seeds"
    CONTENT = "content"  # nothing known to the interaction models: nearest items by content
    TRENDING = "trending"  # nothing to go on at all
    POPULAR = "popular"  # nothing to go on, and no interactions learnt yet: the catalog's most popular items


@dataclass(frozen=True)
class RecommendationRequest:
    """For a user (their recent history) or for seed items (a playlist or basket, with optional negatives).

    `at` is the moment of the request: history up to it, trending windows ending at it (now when None);
    offline evaluation replays the past with it. `filter` (the neutral filter of /v1/search) holds for every
    item returned: each candidate source applies it."""

    user_id: str | None = None
    seed_item_ids: tuple[str, ...] = ()
    negative_item_ids: tuple[str, ...] = ()
    exclude_item_ids: tuple[str, ...] = ()
    k: int = 10
    at: datetime | None = None
    filter: Filter | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.k <= MAX_K:
            raise ValidationError("k", f"must be between 1 and {MAX_K}")
        for name in ("seed_item_ids", "negative_item_ids", "exclude_item_ids"):
            if len(getattr(self, name)) > MAX_SEEDS:
                raise ValidationError(name, f"at most {MAX_SEEDS} ids")
        both = sorted(set(self.seed_item_ids) & set(self.negative_item_ids))
        if both:  # more like it and less like it at once: a client's mistake, not something to guess at
            raise ValidationError("negative_item_ids", f"{both[0]!r} is also a seed")
        if self.user_id is not None and not 1 <= len(self.user_id) <= 256:
            raise ValidationError("user_id", "must be 1 to 256 characters")


@dataclass(frozen=True)
class Profile:
    """What a request says about taste: distinct items, oldest first, with recency x type weights."""

    mode: Mode
    user_id: str | None
    items: tuple[str, ...]
    weights: tuple[float, ...]
    recent: tuple[str, ...]  # the last distinct items, most recent first: where sequential sources start
    negatives: tuple[str, ...]
    excluded: frozenset[str]
    at: float  # epoch seconds
    history_length: int


@dataclass(frozen=True)
class RecContext:
    """A profile in the models' terms (rows of the artefacts' item vocabulary) with the user's vector."""

    profile: Profile
    rows: IntArray  # rows of the profile's items the models know
    row_weights: FloatArray
    recent_rows: IntArray
    recent_weights: FloatArray
    negative_rows: IntArray
    excluded_mask: BoolArray  # over the vocabulary
    user_vector: Vector | None
    last_vector: Vector | None  # the most recent profile item's vector
    # The request's view of the catalog (its filter, the items fetched so far); None without an engine.
    catalog: CatalogView | None = None

    @property
    def filter(self) -> Filter | None:
        return None if self.catalog is None else self.catalog.filter

    @property
    def known(self) -> bool:
        """Whether the interaction models have anything to say about this profile."""
        return bool(self.rows.size)


@dataclass(frozen=True)
class SourceResult:
    """A source's candidates, best first (exclusions already applied). `dense` holds the source's score of
    every item of the models' vocabulary when the source has one: the ranker's features read it."""

    name: str
    item_ids: tuple[str, ...]
    scores: tuple[float, ...]
    dense: FloatArray | None = None


@dataclass(frozen=True)
class SourceHit:
    score: float
    rank: int  # 1-based


@dataclass
class Candidate:
    """An item some sources proposed; `sources` says which, with each one's score and rank."""

    item_id: str
    row: int  # row in the models' vocabulary, -1 when the interaction models do not know the item
    sources: dict[str, SourceHit] = field(default_factory=dict)


@dataclass(frozen=True)
class FeatureMatrix:
    names: tuple[str, ...]
    values: npt.NDArray[np.float64]  # candidates x features


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    sources: dict[str, SourceHit]


@dataclass(frozen=True)
class RecommendationResult:
    items: list[Recommendation]
    mode: Mode
    ranker: str  # which ranker ordered the candidates
    candidates: int  # how many candidates the sources produced
    # Seed and negative ids the catalog does not hold (never ingested, or deleted): a client's typo shows here
    # instead of a silent fallback. The interaction models may still know a deleted item and use it.
    unknown_item_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class CandidateSet:
    """What the candidate stage hands to the ranker: the context, each source's answer, the merged candidates
    and their features."""

    context: RecContext
    results: tuple[SourceResult, ...]
    candidates: list[Candidate]
    features: FeatureMatrix


@dataclass(frozen=True)
class RankedCandidate:
    candidate: Candidate
    score: float
