"""An answer shorter than k is filled with the catalog's most popular items (services/recs/fill.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.core.domain import Item
from services.core.engines.base import Document
from services.core.engines.embedded import EmbeddedEngine
from services.core.filters import parse_filter
from services.recs.fill import POPULAR
from services.recs.interactions import InMemoryInteractionStore, Interaction, InteractionType
from services.recs.models import ArtefactBuilder, ArtefactStore, InteractionLog, RecsArtefacts
from services.recs.pipeline import RecommendationPipeline, RecommendationService, default_sources
from services.recs.settings import RecsSettings
from services.recs.sources import TRENDING, VECTOR
from services.recs.types import Mode, RecommendationRequest
from tests.unit.recs_world import ALIAS, DIM, at, item_vectors, world_interactions

pytestmark = pytest.mark.unit

SETTINGS = RecsSettings(source_depth=20)
# popularity by item: c2 the most popular, b6 unavailable, a1..a3 and c1 without a value
POPULARITY = {"c2": 900.0, "b6": 800.0, "a6": 700.0, "b1": 500.0, "a5": 300.0, "b2": 200.0, "a4": 100.0}
POPULARITY.update({f"b{n}": 50.0 - n for n in range(3, 6)})


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedEngine]:
    from services.core.settings import CoreSettings

    e = EmbeddedEngine(CoreSettings(data_dir=tmp_path_factory.mktemp("engine")))
    version = e.create_version(ALIAS, dimension=DIM, model_id="synthetic")
    docs = [
        Document(
            Item(
                id=item,
                title=f"film {item}",
                popularity=POPULARITY.get(item),
                available=item != "b6",
                categories=["comedy" if item.startswith("a") else "drama"],
            ),
            vec,
        )
        for item, vec in item_vectors().items()
    ]
    assert e.upsert(ALIAS, docs, version=version.version).ok
    e.point_alias(ALIAS, version.version)
    yield e
    e.close()


def nothing_published(
    engine: EmbeddedEngine, tmp_path: Path, settings: RecsSettings = SETTINGS
) -> RecommendationService:
    return RecommendationService(
        store=InMemoryInteractionStore([]),
        artefacts=ArtefactStore.local(tmp_path / "recs"),
        settings=settings,
        engine=engine,
        alias=ALIAS,
        reload_every_s=0,
    )


def ids(items: object) -> list[str]:
    return [r.item_id for r in items]  # type: ignore[attr-defined]


def test_before_the_first_refresh_a_new_user_gets_the_catalogs_most_popular_items(
    engine: EmbeddedEngine, tmp_path: Path
) -> None:
    service = nothing_published(engine, tmp_path)
    result = service.run(RecommendationRequest(user_id="new-user", k=4))
    assert result.mode is Mode.POPULAR
    assert ids(result.items) == ["c2", "a6", "b1", "a5"]  # b6 is unavailable
    assert [r.sources[POPULAR].rank for r in result.items] == [1, 2, 3, 4]
    assert [r.sources[POPULAR].score for r in result.items] == [900.0, 700.0, 500.0, 300.0]
    scores = [r.score for r in result.items]
    assert scores == sorted(scores, reverse=True)


def test_the_fill_honours_the_filter_and_the_exclusions(engine: EmbeddedEngine, tmp_path: Path) -> None:
    service = nothing_published(engine, tmp_path)
    comedy = parse_filter({"term": {"categories": "comedy"}})
    result = service.run(RecommendationRequest(k=3, filter=comedy, exclude_item_ids=("a6",)))
    assert ids(result.items) == ["a5", "a4", "a1"]  # then items without a popularity, in the catalog's order
    assert result.mode is Mode.POPULAR


def test_a_catalog_smaller_than_k_gives_what_it_has(engine: EmbeddedEngine, tmp_path: Path) -> None:
    result = nothing_published(engine, tmp_path).run(RecommendationRequest(k=50))
    assert len(result.items) == 13 and len(set(ids(result.items))) == 13 and "b6" not in ids(result.items)


def test_the_fill_can_be_turned_off(engine: EmbeddedEngine, tmp_path: Path) -> None:
    service = nothing_published(engine, tmp_path, RecsSettings(source_depth=20, fill_by=None))
    result = service.run(RecommendationRequest(user_id="new-user", k=4))
    assert result.items == [] and result.mode is Mode.TRENDING


def test_a_short_answer_from_the_sources_is_filled_after_their_items(engine: EmbeddedEngine) -> None:
    # Trending at day 3 knows only A (a1..a6); ask for more than the sources hold.
    log = [i for i in world_interactions() if i.epoch < at(3).timestamp()]
    artefacts: RecsArtefacts = ArtefactBuilder(SETTINGS).run(InteractionLog.build(log, SETTINGS.type_weights))
    store = InMemoryInteractionStore(log)
    pipeline = RecommendationPipeline(store=store, artefacts=artefacts, settings=SETTINGS, engine=engine, alias=ALIAS)
    result = pipeline.run(RecommendationRequest(k=10, at=at(3)))
    got = ids(result.items)
    assert result.mode is Mode.TRENDING and len(got) == 10 and len(set(got)) == 10
    trending = [r for r in result.items if TRENDING in r.sources]
    assert {r.item_id for r in trending} == {f"a{n}" for n in range(1, 7)}
    assert result.items[: len(trending)] == trending  # the sources' items first
    filled = result.items[len(trending) :]
    assert ids(filled) == ["c2", "b1", "b2", "b3"] and all(set(r.sources) == {POPULAR} for r in filled)
    assert max(r.score for r in filled) < min(r.score for r in trending)


def test_a_known_user_short_of_k_is_filled_without_what_they_saw(engine: EmbeddedEngine) -> None:
    artefacts = ArtefactBuilder(SETTINGS).run(InteractionLog.build(world_interactions(), SETTINGS.type_weights))
    seen = [Interaction("ann", item, InteractionType.CLICK, at(32 + n / 100)) for n, item in enumerate(["c2", "a6"])]
    store = InMemoryInteractionStore([*world_interactions(), *seen])
    # Without the vector source, only the interaction models propose: they never heard of c1 and c2.
    sources = [s for s in default_sources(artefacts, SETTINGS, engine, ALIAS) if s.name != VECTOR]
    pipeline = RecommendationPipeline(
        store=store, artefacts=artefacts, settings=SETTINGS, engine=engine, alias=ALIAS, sources=sources
    )
    result = pipeline.run(RecommendationRequest(user_id="ann", k=13, at=at(33)))
    got = ids(result.items)
    assert result.mode is Mode.USER and len(set(got)) == len(got) == 11  # all that the catalog offers her
    assert not {"c2", "a6", "b6"} & set(got)
    assert got[-1] == "c1" and set(result.items[-1].sources) == {POPULAR}
