from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from services.core.settings import BlobSettings, CoreSettings
from services.core.storage import BlobStore, LocalBlobStore, S3BlobStore
from services.recs.interactions import Interaction, InteractionType
from services.recs.models import (
    ArtefactBuilder,
    ArtefactStore,
    CoInteractionJob,
    EaseJob,
    InteractionLog,
    PopularityJob,
    TransitionJob,
    build_artefact_store,
)
from services.recs.settings import CoInteractionSettings, EaseSettings, RecsSettings, TransitionSettings, TypeWeights
from tests.unit.recs_world import at, world_interactions

pytestmark = pytest.mark.unit


def log_of(rows: list[tuple[str, str, float]], kind: InteractionType = InteractionType.CLICK) -> InteractionLog:
    return InteractionLog.build([Interaction(u, i, kind, at(d)) for u, i, d in rows], TypeWeights())


def sim(m: object, log: InteractionLog, a: str, b: str) -> float:
    pos = log.items.pos
    return float(m[pos[a], pos[b]])  # type: ignore[index]


def test_the_log_keeps_taste_only_in_time_order_with_stable_ties() -> None:
    events = [
        Interaction("u", "late", InteractionType.CLICK, at(2)),
        Interaction("u", "shown", InteractionType.IMPRESSION, at(0)),
        Interaction("u", "first", InteractionType.PURCHASE, at(1)),
        Interaction("u", "second", InteractionType.CLICK, at(1)),
    ]
    log = InteractionLog.build(events, TypeWeights())
    assert [log.items.ids[i] for i in log.item] == ["first", "second", "late"]
    assert log.weight.tolist() == [3.0, 1.0, 1.0]
    assert [log.items.ids[i] for i in log.item[log.sequences()[0]]] == ["first", "second", "late"]


def test_co_interaction_is_cosine_of_user_sets_without_self_and_capped_per_item() -> None:
    log = log_of([("u1", "x", 0), ("u1", "y", 0), ("u2", "x", 0), ("u2", "y", 0), ("u3", "x", 0), ("u3", "z", 0)])
    table = CoInteractionJob(CoInteractionSettings(neighbours=5)).run(log)
    assert sim(table, log, "x", "y") == pytest.approx(2 / np.sqrt(3 * 2), rel=1e-5)
    assert sim(table, log, "x", "z") == pytest.approx(1 / np.sqrt(3 * 1), rel=1e-5)
    assert table.diagonal().sum() == 0
    capped = CoInteractionJob(CoInteractionSettings(neighbours=1)).run(log)
    assert capped[log.items.pos["x"]].nnz == 1 and sim(capped, log, "x", "y") > 0


def test_transitions_follow_time_within_the_window() -> None:
    log = log_of([("u", "a", 0), ("u", "b", 1), ("u", "c", 2), ("u", "d", 3)])
    t = TransitionJob(TransitionSettings(window=2)).run(log)
    assert sim(t, log, "a", "b") == 1.0 and sim(t, log, "a", "c") == 0.5 and sim(t, log, "a", "d") == 0.0
    assert sim(t, log, "b", "a") == 0.0  # direction matters


def test_ease_is_left_out_above_its_item_limit() -> None:
    log = log_of([("u1", "x", 0), ("u1", "y", 0), ("u2", "x", 0)])
    b = EaseJob(EaseSettings(l2=1.0)).run(log)
    assert b is not None and b.shape == (2, 2) and np.all(np.diag(b) == 0) and b[0, 1] > 0
    assert EaseJob(EaseSettings(max_items=1)).run(log) is None


def test_trending_is_the_share_of_a_window_that_ends_at_the_request() -> None:
    log = log_of([("u1", "old", 0), ("u2", "old", 0.5), ("u1", "new", 9.5), ("u2", "new", 9.6), ("u3", "x", 9.7)])
    pop = PopularityJob().run(log)
    share = pop.window_share(at(10).timestamp(), days=1)
    assert share[log.items.pos["new"]] == pytest.approx(2 / 3) and share[log.items.pos["old"]] == 0
    assert pop.window_share(at(9.55).timestamp(), days=1)[log.items.pos["new"]] == 1.0  # nothing after `at`
    assert pop.users[log.items.pos["old"]] == 2


def _round_trip(store: ArtefactStore, blobs: BlobStore) -> None:
    settings = RecsSettings()
    built = ArtefactBuilder(settings).run(InteractionLog.build(world_interactions(), settings.type_weights))
    built.ranker, built.feature_names = "not a real model", ["f"]
    assert store.load() is None and store.load_info() is None
    first = store.save(built)
    built.built_at += timedelta(seconds=1)
    second = store.save(built)
    built.built_at += timedelta(seconds=1)
    third = store.save(built)
    assert store.current() == third and store.versions() == [second, third]  # keeps the last two
    assert not list(blobs.list(f"{first}/"))  # nothing of the pruned version is left
    assert first < second < third
    loaded = store.load()
    assert loaded is not None and loaded.items.ids == built.items.ids and loaded.ranker == "not a real model"
    assert (loaded.co_interaction != built.co_interaction).nnz == 0
    assert (loaded.transitions != built.transitions).nnz == 0
    assert built.ease is not None and loaded.ease is not None and np.array_equal(loaded.ease, built.ease)
    assert np.array_equal(loaded.popularity.timeline_ts, built.popularity.timeline_ts)
    assert store.load_info() == built.info
    built.ranker = None
    built.built_at += timedelta(seconds=1)
    store.save(built)
    without = store.load()
    assert without is not None and without.ranker is None


def test_artefacts_round_trip_and_the_pointer_moves_atomically(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "recs")
    _round_trip(ArtefactStore(blobs, keep=2), blobs)
    assert sorted(p.name for p in (tmp_path / "recs").iterdir()) == ["current.json", *ArtefactStore(blobs).versions()]


def test_artefacts_round_trip_in_a_bucket_that_hosts_share(s3_settings: BlobSettings, tmp_path: Path) -> None:
    core = CoreSettings(data_dir=tmp_path / "var")
    recs = RecsSettings(artefacts=s3_settings.model_dump())
    reader = build_artefact_store(core, recs)  # an API host starts before the bucket exists
    assert reader.current() is None and reader.load() is None  # nothing published yet, no error
    _round_trip(build_artefact_store(core, recs, publisher=True), S3BlobStore(s3_settings))  # the job makes it
    again = build_artefact_store(core, recs)  # another host, the same bucket
    assert again.current() is not None and again.load() is not None
    assert not (tmp_path / "var" / "recs").exists()  # nothing on local disk


def test_a_store_named_by_its_kind_alone_keeps_its_own_bucket_and_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """TRAWL_RECS__ARTEFACTS__KIND=s3 alone must not put the artefacts at the root of another store's bucket."""
    from services.api.settings import ApiSettings

    monkeypatch.setenv("TRAWL_RECS__ARTEFACTS__KIND", "s3")
    monkeypatch.setenv("TRAWL_RANKING__REGISTRY__KIND", "s3")
    monkeypatch.setenv("TRAWL_RANKING__FEATURE_LOG__STORE__KIND", "s3")
    settings = ApiSettings()
    stores = [settings.recs.artefacts, settings.ranking.registry, settings.ranking.feature_log.store]
    assert [(s.kind, s.bucket, s.prefix) for s in stores] == [
        ("s3", "trawl-recs", "recs/"),
        ("s3", "trawl-models", "models/"),
        ("s3", "trawl-feature-log", ""),
    ]
