from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from services.core.engines.embedded import EmbeddedEngine
from services.core.storage import LocalBlobStore
from services.recs.interactions import InMemoryInteractionStore, Interaction, InteractionType, SQLiteInteractionStore
from services.recs.models import ArtefactBuilder, ArtefactStore, InteractionLog, RecsArtefacts
from services.recs.pipeline import RecommendationPipeline, RecommendationService
from services.recs.profile import ProfileBuilder, UserVectorBuilder
from services.recs.ranking import FEATURE_NAMES
from services.recs.settings import RankerSettings, RecsSettings
from services.recs.sources import CO_INTERACTION, EASE, TRANSITIONS, TRENDING, VECTOR
from services.recs.training import RankerTrainer, RecsRefreshJob
from services.recs.types import Mode, RecommendationRequest
from tests.unit.recs_world import ALIAS, A, B, at, item_vectors, world_engine, world_interactions

pytestmark = pytest.mark.unit

NOW = at(33)
SETTINGS = RecsSettings(source_depth=20, ranker=RankerSettings(n_estimators=20, min_child_samples=5, cutoffs=2))
ALL_SOURCES = {EASE, CO_INTERACTION, TRANSITIONS, VECTOR, TRENDING}


def alice() -> list[Interaction]:
    return [
        Interaction("alice", "a1", InteractionType.CLICK, at(32.9)),
        Interaction("alice", "a2", InteractionType.CLICK, at(32.9) + timedelta(minutes=1)),
        Interaction("alice", "a3", InteractionType.IMPRESSION, at(32.9) + timedelta(minutes=2)),
    ]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedEngine]:
    e = world_engine(tmp_path_factory.mktemp("engine"))
    yield e
    e.close()


@pytest.fixture(scope="module")
def artefacts() -> RecsArtefacts:
    return ArtefactBuilder(SETTINGS).run(InteractionLog.build(world_interactions(), SETTINGS.type_weights))


@pytest.fixture
def store() -> InMemoryInteractionStore:
    return InMemoryInteractionStore([*world_interactions(), *alice()])


@pytest.fixture
def pipeline(
    store: InMemoryInteractionStore, artefacts: RecsArtefacts, engine: EmbeddedEngine
) -> RecommendationPipeline:
    return RecommendationPipeline(store=store, artefacts=artefacts, settings=SETTINGS, engine=engine, alias=ALIAS)


def ids(result: object) -> list[str]:
    return [r.item_id for r in result.items]  # type: ignore[attr-defined]


def test_a_user_gets_what_comes_next_and_never_what_they_engaged_with(pipeline: RecommendationPipeline) -> None:
    result = pipeline.run(RecommendationRequest(user_id="alice", k=10, at=NOW))
    assert result.mode is Mode.USER and result.ranker == "rrf"  # no ranker trained in these artefacts
    got = ids(result)
    assert not {"a1", "a2"} & set(got)
    assert got[0] == "a3"  # only shown to her (an impression), so not excluded; and it is what comes next
    assert set(got[:4]) == {"a3", "a4", "a5", "a6"}


def test_every_recommendation_names_the_sources_that_proposed_it(pipeline: RecommendationPipeline) -> None:
    result = pipeline.run(RecommendationRequest(user_id="alice", k=20, at=NOW))
    assert len(result.items) == 12  # the 14 films but the two she watched
    by_id = {r.item_id: r for r in result.items}
    assert {TRANSITIONS, CO_INTERACTION, EASE, VECTOR} <= set(by_id["a3"].sources)
    for r in result.items:
        assert r.sources and set(r.sources) <= ALL_SOURCES
        assert all(hit.rank >= 1 for hit in r.sources.values())
    assert any(TRENDING in r.sources for r in result.items if r.item_id in B)
    assert VECTOR in by_id["c1"].sources and set(by_id["c1"].sources) == {VECTOR}  # new item: only content knows it


def test_an_unknown_user_gets_trending_items(pipeline: RecommendationPipeline) -> None:
    result = pipeline.run(RecommendationRequest(user_id="nobody", k=5, at=NOW))
    assert result.mode is Mode.TRENDING and result.ranker == "fallback"
    assert len(result.items) == 5 and set(ids(result)) <= set(B)  # B is what everyone engaged with lately
    assert all(set(r.sources) == {TRENDING} for r in result.items)


def test_trending_looks_only_at_the_window_before_the_request(pipeline: RecommendationPipeline) -> None:
    result = pipeline.run(RecommendationRequest(k=3, at=at(3)))  # back when only A was being watched
    assert result.mode is Mode.TRENDING and set(ids(result)) <= set(A)


def test_cold_start_falls_back_to_content_then_trending(pipeline: RecommendationPipeline) -> None:
    # c1 is a new film nobody has watched: the interaction models know nothing, its content is close to A.
    result = pipeline.run(RecommendationRequest(seed_item_ids=("c1",), k=10, at=NOW))
    assert result.mode is Mode.CONTENT
    got = ids(result)
    assert "c1" not in got
    assert set(got[:6]) == set(A)  # content neighbours first
    assert all(VECTOR in r.sources for r in result.items[:6])
    assert len(got) == 10 and TRENDING in result.items[-1].sources  # then trending fills the list


def test_negative_seeds_push_similar_items_out(pipeline: RecommendationPipeline) -> None:
    mixed = RecommendationRequest(seed_item_ids=("a1", "b1"), k=8, at=NOW)
    before = ids(pipeline.run(mixed))
    assert set(before[:4]) & set(B)  # without negatives, B items are near the top
    after = pipeline.run(RecommendationRequest(seed_item_ids=("a1", "b1"), negative_item_ids=("b2",), k=8, at=NOW))
    got = ids(after)
    assert after.mode is Mode.SEEDS and "b2" not in got and "a1" not in got and "b1" not in got
    first_b = min(n for n, item in enumerate(got) if item in B) if set(got) & set(B) else len(got)
    assert first_b >= 4 and set(got[:4]) <= {*A, "c1"}


def test_profile_weights_follow_recency_and_type(store: InMemoryInteractionStore) -> None:
    store.record(
        [
            Interaction("bob", "b1", InteractionType.CLICK, at(1)),
            Interaction("bob", "a1", InteractionType.PURCHASE, at(2)),
            Interaction("bob", "a2", InteractionType.CLICK, at(3)),
            Interaction("bob", "a3", InteractionType.IMPRESSION, at(4)),
        ]
    )
    settings = RecsSettings(recency_half_life=1.0)
    profile = ProfileBuilder(store, settings).run(RecommendationRequest(user_id="bob", at=NOW))
    weights = dict(zip(profile.items, profile.weights, strict=True))
    assert set(weights) == {"b1", "a1", "a2"}  # impressions carry no taste
    assert weights["a2"] == pytest.approx(1.0)  # the most recent
    assert weights["a1"] == pytest.approx(3.0 * 0.5)  # a purchase (x3), one half-life back
    assert weights["b1"] == pytest.approx(0.25)  # a click, two half-lives back
    assert profile.recent[:2] == ("a2", "a1") and "a3" not in profile.excluded

    class Vectors:
        def get(self, wanted: object) -> dict[str, np.ndarray]:
            return item_vectors()

    vector, last = UserVectorBuilder(Vectors(), settings).run(profile)
    assert vector is not None and last is not None and np.isclose(np.linalg.norm(vector), 1.0)
    vecs = item_vectors()
    assert float(vector @ vecs["a4"]) > float(vector @ vecs["b4"])  # recent taste wins
    assert np.allclose(last, vecs["a2"])


def test_deleted_or_unavailable_items_are_never_recommended(
    store: InMemoryInteractionStore, artefacts: RecsArtefacts, tmp_path: Path
) -> None:
    engine = world_engine(tmp_path / "own")
    engine.delete(ALIAS, ["a3"])
    pipeline = RecommendationPipeline(store=store, artefacts=artefacts, settings=SETTINGS, engine=engine, alias=ALIAS)
    got = ids(pipeline.run(RecommendationRequest(user_id="alice", k=10, at=NOW)))
    assert "a3" not in got and got[0] == "a4"
    engine.close()


def test_the_trained_ranker_serves_and_survives_a_round_trip(
    store: InMemoryInteractionStore, engine: EmbeddedEngine, tmp_path: Path
) -> None:
    trained = RankerTrainer(SETTINGS, engine=engine, alias=ALIAS).run(world_interactions())
    assert trained.ranker is not None and trained.info["ranker_groups"] >= 10
    saved = ArtefactStore.local(tmp_path / "recs")
    saved.save(trained)
    loaded = saved.load()
    assert loaded is not None
    answers = []
    for artefacts in (trained, loaded):
        pipeline = RecommendationPipeline(
            store=store, artefacts=artefacts, settings=SETTINGS, engine=engine, alias=ALIAS
        )
        result = pipeline.run(RecommendationRequest(user_id="alice", k=5, at=NOW))
        assert result.ranker == "lambdarank" and not {"a1", "a2"} & set(ids(result))
        answers.append(ids(result))
    assert answers[0] == answers[1]


def test_the_refresh_job_publishes_artefacts_from_the_store(engine: EmbeddedEngine, tmp_path: Path) -> None:
    store = SQLiteInteractionStore(tmp_path / "interactions.sqlite")
    store.record(world_interactions())
    artefacts = ArtefactStore.local(tmp_path / "recs")
    RecsRefreshJob(store, artefacts, SETTINGS, engine=engine, alias=ALIAS).run(train_ranker=False)
    first = artefacts.load()
    assert first is not None and first.ranker is None and set(first.items.ids) == {*A, *B}
    RecsRefreshJob(store, artefacts, SETTINGS, engine=engine, alias=ALIAS).run(train_ranker=True)
    second = artefacts.load()
    assert second is not None and second.ranker is not None
    store.close()


def test_the_service_serves_cold_start_before_the_first_job_and_swaps_in_new_artefacts(
    store: InMemoryInteractionStore, engine: EmbeddedEngine, artefacts: RecsArtefacts, tmp_path: Path
) -> None:
    published = ArtefactStore.local(tmp_path / "recs")
    service = RecommendationService(
        store=store, artefacts=published, settings=SETTINGS, engine=engine, alias=ALIAS, reload_every_s=0
    )
    assert service.version is None
    early = service.run(RecommendationRequest(user_id="alice", k=5, at=NOW))
    assert early.mode is Mode.CONTENT and not {"a1", "a2"} & set(ids(early))  # content of what she watched
    published.save(artefacts)
    later = service.run(RecommendationRequest(user_id="alice", k=5, at=NOW))
    assert service.version == published.current() and later.mode is Mode.USER and ids(later)[0] == "a3"


def test_an_unreachable_artefact_store_leaves_the_service_serving_what_it_has(
    store: InMemoryInteractionStore, engine: EmbeddedEngine, artefacts: RecsArtefacts, tmp_path: Path
) -> None:
    class Flaky(LocalBlobStore):
        """A bucket that stops answering (a network error is no OSError in botocore)."""

        down = False

        def get(self, key: str) -> bytes | None:
            if self.down:
                raise RuntimeError("could not connect to the endpoint URL")
            return super().get(key)

    blobs = Flaky(tmp_path / "recs")
    published = ArtefactStore(blobs)
    published.save(artefacts)
    service = RecommendationService(
        store=store, artefacts=published, settings=SETTINGS, engine=engine, alias=ALIAS, reload_every_s=0
    )
    before = service.run(RecommendationRequest(user_id="alice", k=5, at=NOW))
    assert service.version == published.current() and before.mode is Mode.USER
    blobs.down = True
    during = service.run(RecommendationRequest(user_id="alice", k=5, at=NOW))
    assert ids(during) == ids(before) and service.version is not None
    blobs.down = False
    # a version published with a ranker whose file is gone is not served, and not fetched again at once
    served = service.version
    broken = published.save(replace(artefacts, ranker="tree\n", built_at=artefacts.built_at + timedelta(days=1)))
    blobs.delete(f"{broken}/ranker.txt")
    reads: list[str] = []
    original_get = blobs.get
    blobs.get = lambda key: (reads.append(key), original_get(key))[1]  # type: ignore[method-assign]
    for _ in range(3):
        assert ids(service.run(RecommendationRequest(user_id="alice", k=5, at=NOW))) == ids(before)
    assert service.version == served
    assert reads.count(f"{broken}/ranker.txt") == 1  # one attempt, not one per request
    assert not any(k.endswith("arrays.npz") for k in reads)  # the missing file is found before the arrays
    # a ranker this LightGBM cannot read (a worker on another version): the service keeps what it serves
    unreadable = replace(
        artefacts, ranker="tree\n", feature_names=list(FEATURE_NAMES), built_at=artefacts.built_at + timedelta(days=2)
    )
    published.save(unreadable)
    assert ids(service.run(RecommendationRequest(user_id="alice", k=5, at=NOW))) == ids(before)
    assert service.version == served


def test_requests_are_served_while_one_of_them_loads_new_artefacts(
    store: InMemoryInteractionStore, engine: EmbeddedEngine, artefacts: RecsArtefacts, tmp_path: Path
) -> None:
    import threading

    class Slow(LocalBlobStore):
        """A bucket that takes its time over the arrays."""

        gate = threading.Event()
        waiting = threading.Event()

        def get(self, key: str) -> bytes | None:
            if key.endswith("arrays.npz"):
                self.waiting.set()
                assert self.gate.wait(10)
            return super().get(key)

    blobs = Slow(tmp_path / "recs")
    published = ArtefactStore(blobs)
    service = RecommendationService(
        store=store, artefacts=published, settings=SETTINGS, engine=engine, alias=ALIAS, reload_every_s=0
    )
    published.save(artefacts)
    loader = threading.Thread(target=service.run, args=(RecommendationRequest(user_id="alice", k=5, at=NOW),))
    loader.start()
    assert blobs.waiting.wait(10)  # the first request is loading the new version
    quick = service.run(RecommendationRequest(user_id="alice", k=5, at=NOW))  # served meanwhile, not queued
    assert quick.mode is Mode.CONTENT and service.version is None
    blobs.gate.set()
    loader.join(10)
    assert service.version == published.current()


def test_a_following_service_swaps_in_new_artefacts_without_a_request_reading_the_store(
    store: InMemoryInteractionStore, engine: EmbeddedEngine, artefacts: RecsArtefacts, tmp_path: Path
) -> None:
    import threading
    import time

    class Watched(LocalBlobStore):
        readers: ClassVar[set[str]] = set()

        def get(self, key: str) -> bytes | None:
            self.readers.add(threading.current_thread().name)
            return super().get(key)

    blobs = Watched(tmp_path / "recs")
    published = ArtefactStore(blobs)
    service = RecommendationService(
        store=store, artefacts=published, settings=SETTINGS, engine=engine, alias=ALIAS, reload_every_s=0.05
    )
    service.follow()
    try:
        Watched.readers.clear()
        published.save(artefacts)
        deadline = time.monotonic() + 10
        while service.version is None and time.monotonic() < deadline:
            assert service.run(RecommendationRequest(user_id="alice", k=5, at=NOW)).items
            time.sleep(0.02)
        assert service.run(RecommendationRequest(user_id="alice", k=5, at=NOW)).mode is Mode.USER
        assert Watched.readers == {"recs-artefacts-follower"}  # never a request's thread
        assert service.version == published.current()
    finally:
        service.close()


def test_a_ranker_trained_on_other_features_is_not_used(
    store: InMemoryInteractionStore, artefacts: RecsArtefacts
) -> None:
    stale = replace(artefacts, ranker="tree\n", feature_names=["something_else"])
    pipeline = RecommendationPipeline(store=store, artefacts=stale, settings=SETTINGS)
    assert pipeline.ranker.name == "rrf"
    result = pipeline.run(RecommendationRequest(user_id="alice", k=3, at=NOW))
    assert result.items and not {"a1", "a2"} & set(ids(result))


def test_seeds_and_negatives_the_catalog_lacks_are_named(pipeline: RecommendationPipeline) -> None:
    request = RecommendationRequest(seed_item_ids=("a1", "a-typo", "a1"), negative_item_ids=("b9",), k=3, at=NOW)
    result = pipeline.run(request)
    assert result.unknown_item_ids == ("a-typo", "b9") and result.mode is Mode.SEEDS and len(result.items) == 3
    assert pipeline.run(RecommendationRequest(user_id="alice", k=3, at=NOW)).unknown_item_ids == ()


def test_a_negative_moves_down_what_is_like_it_and_leaves_the_rest_in_order(artefacts: RecsArtefacts) -> None:
    from services.recs.profile import Profile
    from services.recs.ranking import NegativeDemoter
    from services.recs.types import Candidate, RankedCandidate, RecContext

    # cosine of each candidate with the negative: every one somewhat alike (as films are), c4 nearly the same
    sims = [0.6, 0.3, 0.5, 0.35, 0.95, 0.55, 0.3, 0.5, 0.4, 0.45]
    basis = np.eye(len(sims) + 1, dtype=np.float32)
    vectors = {f"c{i}": s * basis[0] + np.sqrt(1 - s * s) * basis[i + 1] for i, s in enumerate(sims)}
    vectors["neg"] = basis[0]

    class Vectors:
        def get(self, ids: object) -> dict[str, np.ndarray]:
            return {i: vectors[i] for i in ids if i in vectors}  # type: ignore[attr-defined]

    profile = Profile(Mode.SEEDS, None, ("s",), (1.0,), ("s",), ("neg",), frozenset(), NOW.timestamp(), 1)
    empty = np.zeros(0, dtype=np.int64)
    context = RecContext(
        profile, empty, np.zeros(0, np.float32), empty, np.zeros(0, np.float32), empty,
        np.zeros(len(artefacts.items), dtype=bool), None, None,
    )  # fmt: skip
    ranked = [RankedCandidate(Candidate(f"c{i}", -1), 1.0 - i / 10) for i in range(len(sims))]
    got = [r.candidate.item_id for r in NegativeDemoter(artefacts, Vectors(), SETTINGS).run(ranked, context)]
    assert got == ["c0", "c1", "c2", "c3", "c5", "c6", "c7", "c8", "c9", "c4"]
