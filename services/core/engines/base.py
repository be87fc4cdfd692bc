"""The engine contract: versioned indices behind an alias, writes with per-item outcomes, three query types.

Everything above the adapters speaks these types; no raw engine hit leaves an adapter.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, auto
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from services.core.domain import DEFAULT_FIELD_BOOSTS, TEXT_FIELDS, FieldKind, Item, ItemLabel
from services.core.errors import ValidationError
from services.core.filters import Filter

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Document:
    """An item with its embedding, ready to be written."""

    item: Item
    vector: Vector


@dataclass(frozen=True)
class StoredDocument:
    """What an engine holds for an item. `vector` is present only when asked for."""

    item: Item
    content_hash: str
    vector: Vector | None = None


class Unknown(Enum):
    """A value an engine did not give (None is a value: an item without a popularity)."""

    UNKNOWN = auto()


UNKNOWN = Unknown.UNKNOWN


class Hit:
    """One result of a query: the id, the engine's raw score, the stored item, and the item's vector when the
    engine had it at hand for free.

    An engine may hand the item over unparsed (`load`): a retrieval leg returns a few hundred hits, while
    scoring reads a window of them and a page shows ten. The item is then built the first time it is read.
    `vector` is None unless the engine fetched it with the hit (OpenSearch reads it in the same fetch as the
    source, so a scorer that needs the candidates' vectors saves a second round trip); `unpack` builds it
    when first read, the same way as `load`.
    `popularity`, when the engine gives it (the embedded engine reads it from a column), is the item's own,
    known without building the item: search-as-you-type weighs every hit by popularity but shows a few.
    `label` likewise, when the engine holds it: the title, brand and availability suggestions are told apart
    and completed by.
    """

    __slots__ = ("_item", "_label", "_load", "_popularity", "_unpack", "_vector", "id", "score")

    def __init__(
        self,
        id: str,
        score: float,
        item: Item | None = None,
        *,
        load: Callable[[], Item] | None = None,
        unpack: Callable[[], Vector] | None = None,
        popularity: float | Unknown | None = UNKNOWN,
        label: ItemLabel | None = None,
    ) -> None:
        if (item is None) == (load is None):
            raise ValueError("a Hit needs either its item or a way to load it")
        self.id = id
        self.score = score
        self._item = item
        self._load = load
        self._vector: Vector | None = None
        self._unpack = unpack
        self._popularity = popularity
        self._label = label

    @property
    def item(self) -> Item:
        item = self._item
        if item is None:
            assert self._load is not None
            # Two threads may both load it: they build equal items and either one is kept.
            item = self._item = self._load()
            self._load = None
        return item

    @property
    def popularity(self) -> float | None:
        """The item's popularity: as the engine gave it, else read off the item (which builds it)."""
        given = self._popularity
        return self.item.popularity if given is UNKNOWN else given

    @property
    def label(self) -> ItemLabel:
        """The item's title, brand and availability: as the engine gave them, else read off the item (which
        builds it)."""
        given = self._label
        return ItemLabel.of(self.item) if given is None else given

    @property
    def vector(self) -> Vector | None:
        vector = self._vector
        if vector is None and self._unpack is not None:
            vector = self._vector = self._unpack()
            self._unpack = None
        return vector

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Hit):
            return NotImplemented
        return (self.id, self.score, self.item) == (other.id, other.score, other.item)

    __hash__ = None  # type: ignore[assignment]  # mutable cache inside; compared by value like the dataclass was

    def __repr__(self) -> str:
        return f"Hit(id={self.id!r}, score={self.score!r}, loaded={self._item is not None})"


@dataclass(frozen=True)
class ItemFailure:
    id: str
    reason: str
    retryable: bool = False


@dataclass
class BulkResult:
    """Per-item outcome of a write: every id given is in exactly one of the two lists."""

    succeeded: list[str] = field(default_factory=list)
    failed: list[ItemFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass(frozen=True)
class IndexVersion:
    alias: str
    version: int
    name: str
    dimension: int
    model_id: str
    created_at: datetime
    live: bool
    count: int
    # Set when the version began as a clone of another (segments shared, nothing rebuilt or copied).
    cloned_from: int | None = None


# Suggest's popularity prior: text score x (1 + weight * ln(1 + popularity)). Multiplied, so that it means the
# same on engines whose text scores differ in scale; logarithmic, so that a catalog of view counts in the
# millions still lets the typed text decide between a popular title and a matching one.
SUGGEST_POPULARITY_WEIGHT = 0.2
# Suggest matches the typed words in the brand too ("spielb" finds Steven Spielberg's films), but a brand match
# scores this share of a title match: with the prior above, a title that matches stays above a brand that does,
# unless the brand's item is far more popular (a prior more than 1 / weight times the title's).
SUGGEST_BRAND_WEIGHT = 0.3
PRIOR_WINDOW = 100


def popularity_prior(popularity: float | None, weight: float = SUGGEST_POPULARITY_WEIGHT) -> float:
    return 1.0 + weight * math.log1p(max(popularity or 0.0, 0.0))


@runtime_checkable
class SearchEngine(Protocol):
    """The contract both engines fulfil; `tests/contract/` checks it against each.

    `alias` names a logical index. Reads and writes go to the version the alias points at, or to
    `version` when given: reindexing writes to a new version before it goes live, and a query that embedded
    its text with the live version's model searches exactly that version, even if the alias moves meanwhile.
    `clone_version` makes the next version a copy of `source` without rebuilding it, where the engine can and
    the index definition is unchanged; None tells the caller to create a version and `copy_version` into it.
    `copy_version` copies every document with its vector (a reindex with an unchanged model embeds nothing);
    `progress(done, total)` is called along the way and may return False to stop the copy.
    `get_vectors` reads only the stored vectors (ids not found are left out): ranking features compare
    candidates with one another without parsing their items.
    `prefix_suggest` ranks the titles that match the typed words (the last one a prefix, completed ones typo
    tolerant) by their text score times `popularity_prior(popularity, popularity_weight)` (0: the text alone):
    among "Star Kid" and "Star Wars" for "star", the one people want. OpenSearch applies the prior to every
    match; the embedded engine to the best `PRIOR_WINDOW` matches by text (a short prefix matches thousands).
    `top_by_field` lists items by a number or date field, highest first, then items without a value (no text,
    no vector: what a cold start shows before any interaction is known); `Hit.score` is the value (a date's
    as epoch seconds), 0.0 for an item without one. Ties keep an order that is stable between calls.
    `state_token` is a value that differs whenever what a query of the alias (or of `version`) may find has
    changed: a write by any process, a move of the alias. None where the engine cannot tell without querying
    (OpenSearch shows writes at its own refresh); a caller then holds no answers for later.
    `keyword_search(terms=...)` adds weighted words to the text (query expansion): each word is searched over
    the same fields and boosts and its score counts `weight` times, the text's own words once; a document
    that matches only an added word is found too (an expanded query is a disjunction).
    """

    # versions and alias
    def create_version(self, alias: str, *, dimension: int, model_id: str) -> IndexVersion: ...
    def clone_version(self, alias: str, source: int) -> IndexVersion | None: ...
    def point_alias(self, alias: str, version: int) -> None: ...
    def list_versions(self, alias: str) -> list[IndexVersion]: ...
    def live_version(self, alias: str) -> IndexVersion | None: ...
    def drop_version(self, alias: str, version: int) -> None: ...
    def drop_alias(self, alias: str) -> None: ...

    # writes and reads by id
    def upsert(self, alias: str, docs: Sequence[Document], *, version: int | None = None) -> BulkResult: ...
    def delete(self, alias: str, ids: Sequence[str], *, version: int | None = None) -> BulkResult: ...
    def get(
        self, alias: str, ids: Sequence[str], *, with_vectors: bool = False, version: int | None = None
    ) -> list[StoredDocument]: ...
    def get_vectors(self, alias: str, ids: Sequence[str], *, version: int | None = None) -> dict[str, Vector]: ...
    def count(self, alias: str, *, version: int | None = None) -> int: ...
    def copy_version(
        self, alias: str, source: int, target: int, *, progress: Callable[[int, int], bool] | None = None
    ) -> int: ...
    def refresh(self, alias: str, *, version: int | None = None) -> None: ...
    def state_token(self, alias: str, *, version: int | None = None) -> Hashable | None: ...
    def scan(
        self, alias: str, *, version: int | None = None, batch_size: int = 500, with_vectors: bool = True
    ) -> Iterator[list[StoredDocument]]: ...

    # queries
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
    ) -> list[Hit]: ...
    def vector_search(
        self, alias: str, vector: Vector, *, k: int, filter: Filter | None = None, version: int | None = None
    ) -> list[Hit]: ...
    def prefix_suggest(
        self,
        alias: str,
        text: str,
        *,
        k: int,
        filter: Filter | None = None,
        version: int | None = None,
        popularity_weight: float = SUGGEST_POPULARITY_WEIGHT,
    ) -> list[Hit]: ...
    def top_by_field(
        self, alias: str, field: str, *, k: int, filter: Filter | None = None, version: int | None = None
    ) -> list[Hit]: ...

    def close(self) -> None: ...


# Helpers both adapters share, so that they agree on what counts as valid input.

_WORD = re.compile(r"\w+", re.UNICODE)


def version_index_name(alias: str, version: int) -> str:
    return f"{alias}-v{version:04d}"


def check_alias(alias: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_\-]{0,100}", alias):
        raise ValidationError("alias", "must be lowercase letters, digits, '-' or '_' (at most 101 characters)")
    return alias


def check_document(doc: Document, dimension: int) -> str | None:
    """Why a document cannot be written, or None. A bad item fails alone; its batch goes on."""
    vec = doc.vector
    if vec.ndim != 1 or vec.shape[0] != dimension:
        return f"vector has shape {vec.shape}, the index expects ({dimension},)"
    if not np.all(np.isfinite(vec)):
        return "vector has NaN or infinite values"
    norm = float(np.linalg.norm(vec))
    if norm == 0 or math.isnan(norm):
        return "vector is all zeros"
    return None


def normalise(vec: Vector) -> Vector:
    out = np.asarray(vec, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(out))
    return out / norm if norm > 0 else out


def query_words(text: str, max_terms: int) -> list[str]:
    """Words of a keyword query, capped: a 64 KB paste must not become a 10,000-clause query."""
    return _WORD.findall(text.lower())[:max_terms]


def weighted_words(terms: Mapping[str, float] | None, max_terms: int) -> list[tuple[str, float]]:
    """The added words of an expanded keyword query with their weights (a term of several words gives each its
    weight; a word given twice keeps the larger), capped like the query's words. Weights must be finite and
    >= 0; a zero weight drops the word."""
    out: dict[str, float] = {}
    for term, weight in (terms or {}).items():
        if not math.isfinite(weight) or weight < 0:
            raise ValidationError("terms", f"weight of {term!r} must be a finite number >= 0")
        if weight > 0:
            for word in query_words(term, max_terms):
                out[word] = max(out.get(word, 0.0), float(weight))
    return list(out.items())[:max_terms]


def suggest_parts(text: str, max_terms: int) -> tuple[list[str], str | None]:
    """Completed words (typo tolerant) and the word being typed (a prefix), if the text does not end in a space."""
    words = query_words(text, max_terms)
    if not words:
        return [], None
    if text[-1:].isspace() or not text[-1:].isalnum():
        return words, None
    return words[:-1], words[-1]


def fuzzy_distance(word: str) -> int:
    """Edit distance allowed for a completed word, as OpenSearch's AUTO: 0 up to 2 chars, 1 up to 5, else 2."""
    return 0 if len(word) <= 2 else 1 if len(word) <= 5 else 2


def resolve_boosts(boosts: Mapping[str, float] | None) -> dict[str, float]:
    chosen = dict(boosts) if boosts else dict(DEFAULT_FIELD_BOOSTS)
    for name, weight in chosen.items():
        if name not in TEXT_FIELDS:
            raise ValidationError(f"boosts.{name}", f"unknown text field; searchable fields: {', '.join(TEXT_FIELDS)}")
        if not weight > 0:
            raise ValidationError(f"boosts.{name}", "must be > 0")
    return chosen


def check_sort_field(fields: Mapping[str, FieldKind], name: str) -> FieldKind:
    """The kind of a field `top_by_field` can order by: a number or a date of the catalog's filter fields."""
    kind = fields.get(name)
    if kind is not FieldKind.NUMBER and kind is not FieldKind.DATE:
        sortable = sorted(f for f, k in fields.items() if k in (FieldKind.NUMBER, FieldKind.DATE))
        raise ValidationError("field", f"cannot order by {name!r}; number and date fields: {', '.join(sortable)}")
    return kind


def check_k(k: int) -> int:
    if not 1 <= k <= 10_000:
        raise ValidationError("k", "must be between 1 and 10000")
    return k
