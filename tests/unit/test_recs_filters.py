"""Neutral filters in recommendation requests: every candidate source honours them, for users with history and
for cold start; the vector source applies them inside the engine's k-NN search."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any

import numpy as np
import pytest

from services.core.domain import Item
from services.core.engines.base import Document, Hit, SearchEngine, Vector
from services.core.engines.embedded import EmbeddedEngine
from services.core.errors import ValidationError
from services.core.filters import Filter, Range, Term, matches, parse_filter
from services.core.settings import CoreSettings
from services.recs.interactions import InMemoryInteractionStore, Interaction, InteractionType
from services.recs.models import ArtefactBuilder, InteractionLog, RecsArtefacts
from services.recs.pipeline import RecommendationPipeline
from services.recs.settings import RecsSettings
from services.recs.sources import VECTOR
from services.recs.types import Mode, RecommendationRequest
from tests.unit.recs_world import ALIAS, DIM, at, item_vectors, world_interactions

pytestmark = pytest.mark.unit

NOW = at(33)
SETTINGS = RecsSettings(source_depth=20)
ODD = {"a1", "a3", "a5", "b1", "b3", "b5", "c1"}
ODD_FILTER = Term("categories", "odd")


def catalog_item(item_id: str) -> Item:
    number = int(item_id[1:])
    return Item(
        id=item_id,
        title=f"film {item_id}",
        categories=["odd" if number % 2 else "even", f"group-{item_id[0]}"],
        price=float(number),
        brand=None if number == 4 else "Studio",
    )


class SpyEngine:
    """The embedded engine, remembering the filters vector searches were given."""

    def __init__(self, engine: EmbeddedEngine) -> None:
        self._engine = engine
        self.vector_filters: list[Filter | None] = []

    def vector_search(
        self, alias: str, vector: Vector, *, k: int, filter: Filter | None = None, version: int | None = None
    ) -> list[Hit]:
        self.vector_filters.append(filter)
        return self._engine.vector_search(alias, vector, k=k, filter=filter, version=version)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedEngine]:
    engine = EmbeddedEngine(CoreSettings(data_dir=tmp_path_factory.mktemp("engine")))
    version = engine.create_version(ALIAS, dimension=DIM, model_id="synthetic")
    docs = [Document(catalog_item(item), vec) for item, vec in item_vectors().items()]
    assert engine.upsert(ALIAS, docs, version=version.version).ok
    engine.point_alias(ALIAS, version.version)
    yield engine
    engine.close()


@pytest.fixture
def engine(embedded: EmbeddedEngine) -> SpyEngine:
    return SpyEngine(embedded)


@pytest.fixture(scope="module")
def artefacts() -> RecsArtefacts:
    return ArtefactBuilder(SETTINGS).run(InteractionLog.build(world_interactions(), SETTINGS.type_weights))


@pytest.fixture
def pipeline(artefacts: RecsArtefacts, engine: SpyEngine) -> RecommendationPipeline:
    alice = [
        Interaction("alice", "a1", InteractionType.CLICK, at(32.9)),
        Interaction("alice", "a2", InteractionType.CLICK, at(32.9) + timedelta(minutes=1)),
    ]
    store = InMemoryInteractionStore([*world_interactions(), *alice])
    spy: SearchEngine = engine  # type: ignore[assignment]
    return RecommendationPipeline(store=store, artefacts=artefacts, settings=SETTINGS, engine=spy, alias=ALIAS)


def ids(result: Any) -> list[str]:
    return [r.item_id for r in result.items]


def test_a_user_with_history_gets_only_items_that_pass_and_every_source_honours_it(
    pipeline: RecommendationPipeline, engine: SpyEngine
) -> None:
    request = RecommendationRequest(user_id="alice", k=10, at=NOW, filter=ODD_FILTER)
    cs = pipeline.candidates(request)
    assert cs.context.known
    proposed = {r.name: set(r.item_ids) for r in cs.results}
    assert all(items <= ODD for items in proposed.values()), proposed
    assert {"a3", "a5"} <= proposed["transitions"] and proposed[VECTOR]  # the filter left them something to say
    result = pipeline.run(request)
    assert result.mode is Mode.USER
    got = ids(result)
    assert set(got) == ODD - {"a1"}  # every odd item she has not engaged with, however the models ranked it
    assert got[0] == "a3"  # still in the models' order: what comes next after a2
    assert all(f is not None and matches(f, catalog_item("a3")) for f in engine.vector_filters)
    assert not any(f is not None and matches(f, catalog_item("a4")) for f in engine.vector_filters)


def test_without_a_filter_the_same_user_gets_even_items_too(pipeline: RecommendationPipeline) -> None:
    got = ids(pipeline.run(RecommendationRequest(user_id="alice", k=10, at=NOW)))
    assert set(got) - ODD, "the filter test above would pass vacuously"


def test_cold_start_trending_honours_the_filter(pipeline: RecommendationPipeline) -> None:
    result = pipeline.run(RecommendationRequest(user_id="nobody", k=3, at=NOW, filter=ODD_FILTER))
    assert result.mode is Mode.TRENDING
    assert ids(result) and set(ids(result)) == {"b1", "b3", "b5"}  # B is trending; its odd films


def test_cold_start_content_filters_inside_the_vector_search(pipeline: RecommendationPipeline) -> None:
    # c1 is new: only content knows it. Its 3 nearest films are A films, some even; filtering inside the k-NN
    # search still finds 3 that pass (a filter applied after a top-3 search would return fewer).
    seed = RecommendationRequest(seed_item_ids=("c1",), k=3, at=NOW)
    assert set(ids(pipeline.run(seed))) - ODD
    cs = pipeline.candidates(RecommendationRequest(seed_item_ids=("c1",), k=3, at=NOW, filter=ODD_FILTER))
    (vector,) = [r for r in cs.results if r.name == VECTOR]
    assert set(vector.item_ids[:3]) == {"a1", "a3", "a5"}
    result = pipeline.run(RecommendationRequest(seed_item_ids=("c1",), k=3, at=NOW, filter=ODD_FILTER))
    assert result.mode is Mode.CONTENT and set(ids(result)) == {"a1", "a3", "a5"}


def test_a_range_on_a_number_field_and_a_filter_nothing_passes(pipeline: RecommendationPipeline) -> None:
    cheap = pipeline.run(RecommendationRequest(user_id="alice", k=10, at=NOW, filter=Range("price", lte=2.0)))
    assert set(ids(cheap)) == {"b1", "b2", "c1", "c2"}  # price is the film's number; a1, a2 are hers
    none = pipeline.run(RecommendationRequest(user_id="alice", k=10, at=NOW, filter=Term("brand", "Nobody")))
    assert none.items == []


def test_a_filter_needs_a_catalog(artefacts: RecsArtefacts) -> None:
    bare = RecommendationPipeline(store=InMemoryInteractionStore(), artefacts=artefacts, settings=SETTINGS)
    with pytest.raises(ValidationError) as err:
        bare.run(RecommendationRequest(user_id="alice", k=3, at=NOW, filter=ODD_FILTER))
    assert err.value.field == "filter"


FILTERS: Sequence[Mapping[str, Any]] = [
    {"term": {"categories": "odd"}},
    {"terms": {"categories": ["group-a", "group-c"]}},
    {"range": {"price": {"gt": 2, "lte": 5}}},
    {"exists": "brand"},
    {"not": {"exists": "brand"}},
    {"and": [{"term": {"categories": "even"}}, {"not": {"term": {"id": "b2"}}}]},
    {"or": [{"term": {"id": "c2"}}, {"range": {"price": {"gte": 6}}}]},
    {"term": {"available": True}},
]


@pytest.mark.parametrize("raw", FILTERS, ids=[str(f) for f in FILTERS])
def test_matching_an_item_agrees_with_the_engine(raw: Mapping[str, Any], embedded: EmbeddedEngine) -> None:
    flt = parse_filter(raw)
    items = [catalog_item(i) for i in item_vectors()]
    expected = {i.id for i in items if matches(flt, i)}
    query = np.ones(DIM, dtype=np.float32)
    found = {h.id for h in embedded.vector_search(ALIAS, query, k=len(items), filter=flt)}
    assert found == expected
