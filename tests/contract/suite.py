"""The engine contract, written once. Each engine's test class inherits `EngineContract` and supplies
an `engine` fixture; every test gets a fresh uuid-named alias that is dropped afterwards."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import pairwise

import numpy as np
import pytest

from services.core.domain import Item
from services.core.engines.base import Document, SearchEngine
from services.core.errors import ValidationError
from services.core.filters import parse_filter

DIM = 32
TITLES = [
    "The Shawshank Redemption",
    "The Godfather",
    "The Dark Knight",
    "Pulp Fiction",
    "Forrest Gump",
    "Inception",
    "Fight Club",
    "The Matrix",
    "Goodfellas",
    "Seven Samurai",
    "City of God",
    "Spirited Away",
    "Parasite",
    "Interstellar",
    "Whiplash",
    "The Prestige",
    "Amélie",
    "Léon: The Professional",
]


def vec(seed: int, dim: int = DIM) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def doc(i: int, title: str | None = None, **fields: object) -> Document:
    item = Item.parse(
        {
            "id": f"item-{i}",
            "title": title or f"Catalog entry {i}",
            "body": f"Plain body text {i}",
            "brand": f"brand-{i % 100}",
            "price": float(i),
            "tags": [f"t{i % 7}"],
            **fields,
        }
    )
    return Document(item, vec(i))


class EngineContract:
    @pytest.fixture
    def alias(self, engine: SearchEngine) -> Iterator[str]:
        name = f"c-{uuid.uuid4().hex[:12]}"
        v = engine.create_version(name, dimension=DIM, model_id="test-model")
        engine.point_alias(name, v.version)
        yield name
        engine.drop_alias(name)
        assert engine.list_versions(name) == []

    def write(self, engine: SearchEngine, alias: str, docs: list[Document]) -> None:
        result = engine.upsert(alias, docs)
        assert result.ok, result.failed
        engine.refresh(alias)

    # ---- versions and alias -------------------------------------------------------------------

    def test_versions_are_numbered_listed_and_dropped(self, engine: SearchEngine, alias: str) -> None:
        first = engine.live_version(alias)
        assert first is not None and first.live and first.model_id == "test-model" and first.dimension == DIM
        second = engine.create_version(alias, dimension=DIM, model_id="other-model")
        assert second.version == first.version + 1 and not second.live
        assert [v.version for v in engine.list_versions(alias)] == [first.version, second.version]
        engine.point_alias(alias, second.version)
        assert engine.live_version(alias).version == second.version  # type: ignore[union-attr]
        with pytest.raises(ValueError, match="live"):
            engine.drop_version(alias, second.version)
        engine.drop_version(alias, first.version)
        assert [v.version for v in engine.list_versions(alias)] == [second.version]

    def test_writes_to_a_named_version_do_not_touch_the_live_one(self, engine: SearchEngine, alias: str) -> None:
        self.write(engine, alias, [doc(1)])
        new = engine.create_version(alias, dimension=DIM, model_id="test-model")
        assert engine.upsert(alias, [doc(2)], version=new.version).ok
        engine.refresh(alias, version=new.version)
        assert engine.count(alias) == 1
        assert engine.count(alias, version=new.version) == 1
        assert [d.item.id for d in engine.get(alias, ["item-2"], version=new.version)] == ["item-2"]
        assert engine.get(alias, ["item-2"]) == []
        # queries can name a version too: a query embedded with that version's model searches exactly it
        assert [h.id for h in engine.keyword_search(alias, "catalog entry", k=5, version=new.version)] == ["item-2"]
        assert [h.id for h in engine.vector_search(alias, vec(2), k=5, version=new.version)] == ["item-2"]
        assert [h.id for h in engine.prefix_suggest(alias, "catalog ent", k=5, version=new.version)] == ["item-2"]
        assert [h.id for h in engine.keyword_search(alias, "catalog entry", k=5)] == ["item-1"]

    def test_a_state_token_changes_with_every_write_and_move_of_the_alias(
        self, engine: SearchEngine, alias: str
    ) -> None:
        """Callers hold answers on it (suggest): an engine gives a token only if no write or alias move keeps it,
        and None otherwise, for good."""
        self.write(engine, alias, [doc(1), doc(2)])
        first = engine.state_token(alias)
        if first is None:
            self.write(engine, alias, [doc(3)])
            assert engine.state_token(alias) is None
            return
        assert engine.state_token(alias) == first  # unchanged while nothing is written
        seen = [first]
        live = engine.live_version(alias)
        assert live is not None
        new = engine.create_version(alias, dimension=DIM, model_id="test-model")
        for change in (
            lambda: self.write(engine, alias, [doc(3)]),
            lambda: self.write(engine, alias, [doc(1, "Renamed entry")]),
            lambda: engine.delete(alias, ["item-2"]),
            lambda: engine.point_alias(alias, new.version),
        ):
            change()
            token = engine.state_token(alias)
            assert token not in seen
            seen.append(token)
        assert engine.state_token(alias, version=live.version) == seen[-2]  # a named version keeps its own
        assert engine.upsert(alias, [doc(4)], version=live.version).ok
        assert engine.state_token(alias) == seen[-1]  # a write to a version that is not live
        assert engine.state_token(alias, version=live.version) not in seen

    def test_copy_version_copies_documents_with_their_vectors(self, engine: SearchEngine, alias: str) -> None:
        self.write(engine, alias, [doc(i) for i in range(120)])
        live = engine.live_version(alias)
        new = engine.create_version(alias, dimension=DIM, model_id="test-model")
        assert live is not None
        seen: list[tuple[int, int]] = []
        copied = engine.copy_version(
            alias, live.version, new.version, progress=lambda d, t: seen.append((d, t)) or True
        )
        engine.refresh(alias, version=new.version)
        assert copied == 120 and engine.count(alias, version=new.version) == 120
        assert seen and seen[-1] == (120, 120)
        (got,) = engine.get(alias, ["item-7"], with_vectors=True, version=new.version)
        assert got.vector is not None and np.allclose(got.vector, vec(7), atol=1e-5)
        assert [h.id for h in engine.vector_search(alias, vec(7), k=1, version=new.version)] == ["item-7"]

    def test_clone_version_is_a_writable_copy_or_declined(self, engine: SearchEngine, alias: str) -> None:
        self.write(engine, alias, [doc(i) for i in range(40)])
        live = engine.live_version(alias)
        assert live is not None
        clone = engine.clone_version(alias, live.version)
        if clone is None:  # an engine may decline; the caller then creates a version and copies into it
            return
        assert clone.version == live.version + 1 and not clone.live and clone.cloned_from == live.version
        assert clone.model_id == live.model_id and clone.count == 40
        (got,) = engine.get(alias, ["item-7"], with_vectors=True, version=clone.version)
        assert got.vector is not None and np.allclose(got.vector, vec(7), atol=1e-5)
        assert [h.id for h in engine.vector_search(alias, vec(7), k=1, version=clone.version)] == ["item-7"]
        # both versions take writes again, independently, and the clone describes itself as such
        assert engine.upsert(alias, [doc(40)], version=clone.version).ok and engine.upsert(alias, [doc(41)]).ok
        engine.refresh(alias, version=clone.version)
        engine.refresh(alias)
        assert engine.count(alias, version=clone.version) == 41 and engine.count(alias) == 41
        assert engine.get(alias, ["item-41"], version=clone.version) == []
        listed = {v.version: v for v in engine.list_versions(alias)}
        assert listed[clone.version].cloned_from == live.version and listed[live.version].cloned_from is None

    # ---- writes and reads by id -----------------------------------------------------------------

    def test_upsert_then_get(self, engine: SearchEngine, alias: str) -> None:
        docs = [doc(i) for i in range(5)]
        self.write(engine, alias, docs)
        got = engine.get(alias, ["item-3", "missing", "item-1"], with_vectors=True)
        assert [d.item.id for d in got] == ["item-3", "item-1"]
        assert got[0].item == docs[3].item
        assert got[0].content_hash == docs[3].item.content_hash
        assert got[0].vector is not None and np.allclose(got[0].vector, docs[3].vector, atol=1e-5)
        assert engine.count(alias) == 5

    def test_get_vectors_reads_only_stored_vectors(self, engine: SearchEngine, alias: str) -> None:
        self.write(engine, alias, [doc(i) for i in range(5)])
        engine.delete(alias, ["item-2"])
        engine.refresh(alias)
        got = engine.get_vectors(alias, ["item-3", "missing", "item-1", "item-3", "item-2"])
        assert set(got) == {"item-3", "item-1"}  # unknown and deleted ids are left out, duplicates asked once
        for i in (1, 3):
            assert got[f"item-{i}"].dtype == np.float32 and np.allclose(got[f"item-{i}"], vec(i), atol=1e-5)
        assert engine.get_vectors(alias, []) == {}
        # an update replaces the vector read back
        self.write(engine, alias, [Document(doc(1).item.model_copy(update={"version": 2}), vec(77))])
        assert np.allclose(engine.get_vectors(alias, ["item-1"])["item-1"], vec(77), atol=1e-5)

    def test_a_vector_that_comes_with_a_hit_is_the_stored_one(self, engine: SearchEngine, alias: str) -> None:
        """An engine may hand a hit's vector over with it (Hit.vector); when it does, it is the item's
        current vector, as get_vectors reads it."""
        self.write(engine, alias, [doc(i, title) for i, title in enumerate(TITLES)])
        self.write(engine, alias, [Document(doc(1, TITLES[1]).item.model_copy(update={"version": 2}), vec(77))])
        hits = [*engine.keyword_search(alias, "the", k=10), *engine.vector_search(alias, vec(77), k=5)]
        carried = {h.id: h.vector for h in hits if h.vector is not None}
        stored = engine.get_vectors(alias, list(carried))
        for id_, v in carried.items():
            assert v.dtype == np.float32 and np.allclose(v, stored[id_], atol=1e-6)

    def test_update_replaces(self, engine: SearchEngine, alias: str) -> None:
        self.write(engine, alias, [doc(1, "Original zebra title"), doc(2)])
        newer = Document(doc(1, "Replacement walrus title").item.model_copy(update={"version": 2}), vec(99))
        self.write(engine, alias, [newer])
        assert engine.count(alias) == 2
        (got,) = engine.get(alias, ["item-1"])
        assert got.item.title == "Replacement walrus title" and got.item.version == 2
        assert engine.keyword_search(alias, "zebra", k=5) == []
        assert [h.id for h in engine.keyword_search(alias, "walrus", k=5)] == ["item-1"]
        assert engine.prefix_suggest(alias, "original zeb", k=5) == []
        top = engine.vector_search(alias, vec(99), k=1)
        assert top[0].id == "item-1" and top[0].score == pytest.approx(1.0, abs=1e-3)
        assert all(h.id != "item-1" or h.score < 0.99 for h in engine.vector_search(alias, vec(1), k=2)[1:])

    def test_delete_hides_from_every_query_type(self, engine: SearchEngine, alias: str) -> None:
        self.write(engine, alias, [doc(i, title) for i, title in enumerate(TITLES)])
        gone = TITLES.index("The Godfather")
        assert f"item-{gone}" in [h.id for h in engine.prefix_suggest(alias, "godf", k=5)]
        result = engine.delete(alias, [f"item-{gone}", "never-existed"])
        assert result.succeeded == [f"item-{gone}"]
        assert [f.id for f in result.failed] == ["never-existed"]
        engine.refresh(alias)
        ids = {f"item-{gone}"}
        assert not ids & {h.id for h in engine.keyword_search(alias, "godfather", k=20)}
        assert not ids & {h.id for h in engine.vector_search(alias, vec(gone), k=len(TITLES))}
        assert not ids & {h.id for h in engine.prefix_suggest(alias, "godf", k=20)}
        assert not ids & {h.id for h in engine.prefix_suggest(alias, "the godfater ", k=20)}
        assert engine.get(alias, list(ids)) == []
        assert engine.count(alias) == len(TITLES) - 1
        assert ids.isdisjoint(d.item.id for batch in engine.scan(alias) for d in batch)

    def test_bulk_with_one_bad_item_reports_it_and_stores_the_others(self, engine: SearchEngine, alias: str) -> None:
        good = [doc(i) for i in range(4)]
        bad = Document(doc(9).item, np.ones(DIM + 3, dtype=np.float32))
        nan = Document(doc(10).item, np.full(DIM, np.nan, dtype=np.float32))
        result = engine.upsert(alias, [good[0], bad, *good[1:], nan])
        assert sorted(result.succeeded) == sorted(d.item.id for d in good)
        assert {f.id for f in result.failed} == {"item-9", "item-10"}
        assert all(f.reason for f in result.failed)
        engine.refresh(alias)
        assert engine.count(alias) == 4 and engine.get(alias, ["item-9", "item-10"]) == []

    def test_scan_iterates_every_document_once(self, engine: SearchEngine, alias: str) -> None:
        self.write(engine, alias, [doc(i) for i in range(23)])
        batches = list(engine.scan(alias, batch_size=5))
        ids = [d.item.id for b in batches for d in b]
        assert sorted(ids) == sorted(f"item-{i}" for i in range(23))
        assert all(len(b) <= 5 for b in batches)
        assert all(d.vector is not None and d.vector.shape == (DIM,) for b in batches for d in b)

    # ---- queries ----------------------------------------------------------------------------------

    def test_bm25_ranks_an_exact_title_match_first(self, engine: SearchEngine, alias: str) -> None:
        docs = [doc(i, t) for i, t in enumerate(TITLES)]
        docs.append(doc(50, "Knight Rider", body="a dark night on the road"))
        docs.append(doc(51, "Dark City", body="the knight of the dark"))
        self.write(engine, alias, docs)
        hits = engine.keyword_search(alias, "The Dark Knight", k=5)
        assert hits[0].id == f"item-{TITLES.index('The Dark Knight')}"
        assert hits[0].item.title == "The Dark Knight"
        assert all(a.score >= b.score for a, b in pairwise(hits))
        body_only = engine.keyword_search(alias, "road", k=5, boosts={"body": 1.0})
        assert [h.id for h in body_only] == ["item-50"]
        assert engine.keyword_search(alias, "road", k=5, boosts={"title": 1.0}) == []

    def test_weighted_added_words_expand_the_keyword_query(self, engine: SearchEngine, alias: str) -> None:
        self.write(
            engine,
            alias,
            [
                doc(1, "Boundary layer flow", body="laminar transition"),
                doc(2, "Boundary layer heat", body="turbulent wall"),
                doc(3, "Supersonic wing", body="turbulent shock"),
                doc(4, "Unrelated title", body="nothing shared"),
            ],
        )
        plain = [h.id for h in engine.keyword_search(alias, "boundary layer", k=5)]
        assert sorted(plain) == ["item-1", "item-2"]
        # an added word counts by its weight: "turbulent" lifts item-2 over item-1, and finds item-3 alone
        up = engine.keyword_search(alias, "boundary layer", k=5, terms={"turbulent": 2.0, "laminar": 0.1})
        assert [h.id for h in up][:2] == ["item-2", "item-1"] and "item-3" in {h.id for h in up}
        down = engine.keyword_search(alias, "boundary layer", k=5, terms={"turbulent": 0.1, "laminar": 2.0})
        assert [h.id for h in down][:2] == ["item-1", "item-2"]
        # a zero weight is no word at all; added words alone make a query; a bad weight names the field
        assert [h.id for h in engine.keyword_search(alias, "boundary layer", k=5, terms={"turbulent": 0.0})] == plain
        assert {h.id for h in engine.keyword_search(alias, "", k=5, terms={"shock": 1.0})} == {"item-3"}
        with pytest.raises(ValidationError) as err:
            engine.keyword_search(alias, "boundary", k=5, terms={"shock": -1.0})
        assert err.value.field == "terms"

    def test_prefix_with_one_typo_in_a_completed_word_finds_the_item(self, engine: SearchEngine, alias: str) -> None:
        self.write(engine, alias, [doc(i, t) for i, t in enumerate(TITLES)])
        want = f"item-{TITLES.index('The Shawshank Redemption')}"
        assert want in [h.id for h in engine.prefix_suggest(alias, "shawshenk red", k=5)]  # typo, then a prefix
        assert want == engine.prefix_suggest(alias, "the shaws", k=5)[0].id  # prefix on the last word
        assert engine.prefix_suggest(alias, "shawshenk zzz", k=5) == []  # the prefix itself must match

    def test_filtered_knn_returns_k_hits_under_a_one_percent_filter(self, engine: SearchEngine, alias: str) -> None:
        n = 2000
        docs = [doc(i, tags=["rare"] if i % 100 == 0 else ["common"]) for i in range(n)]
        for start in range(0, n, 500):
            assert engine.upsert(alias, docs[start : start + 500]).ok
        engine.refresh(alias)
        rare = parse_filter({"term": {"tags": "rare"}})
        hits = engine.vector_search(alias, vec(12345), k=10, filter=rare)
        assert len(hits) == 10
        assert all(h.item.tags == ["rare"] for h in hits)
        assert all(a.score >= b.score for a, b in pairwise(hits))
        # exact answer for comparison: all 20 rare items scored by brute force
        exact = sorted((float(vec(i) @ vec(12345)), f"item-{i}") for i in range(0, n, 100))[::-1][:10]
        assert len({h.id for h in hits} & {i for _, i in exact}) >= 9
        priced = parse_filter(
            {"and": [{"range": {"price": {"gte": 100, "lt": 120}}}, {"not": {"term": {"tags": "rare"}}}]}
        )
        hits = engine.vector_search(alias, vec(1), k=10, filter=priced)
        assert len(hits) == 10 and all(100 <= (h.item.price or 0) < 120 and h.item.tags == ["common"] for h in hits)

    def test_filters_apply_to_keyword_and_suggest(self, engine: SearchEngine, alias: str) -> None:
        self.write(engine, alias, [doc(i, "Matrix reloaded", available=i % 2 == 0) for i in range(10)])
        only_available = parse_filter({"term": {"available": True}})
        ids = {h.id for h in engine.keyword_search(alias, "matrix", k=10, filter=only_available)}
        assert ids == {f"item-{i}" for i in range(0, 10, 2)}
        ids = {h.id for h in engine.prefix_suggest(alias, "matr", k=10, filter=only_available)}
        assert ids == {f"item-{i}" for i in range(0, 10, 2)}
        none = parse_filter({"terms": {"brand": ["no-such-brand"]}})
        assert engine.keyword_search(alias, "matrix", k=10, filter=none) == []
        has_brand = parse_filter({"exists": "brand"})
        assert len(engine.vector_search(alias, vec(3), k=10, filter=has_brand)) == 10

    def test_top_by_field_orders_by_value_under_the_filter(self, engine: SearchEngine, alias: str) -> None:
        popularity = [5.0, 80.0, None, 12.5, 80.5, 0.0, None, 33.0, 7.0, 64.0]
        docs = [
            doc(i, available=i != 9, published_at=f"2024-01-{10 + i:02d}T00:00:00Z", popularity=p)
            for i, p in enumerate(popularity)
        ]
        self.write(engine, alias, docs)
        engine.delete(alias, ["item-4"])  # the most popular one, deleted: never listed
        engine.refresh(alias)
        top = engine.top_by_field(alias, "popularity", k=4)
        assert [(h.id, h.score) for h in top] == [
            ("item-1", 80.0),
            ("item-9", 64.0),
            ("item-7", 33.0),
            ("item-3", 12.5),
        ]
        assert top[0].item.title == "Catalog entry 1"
        available = parse_filter({"term": {"available": True}})
        ids = [h.id for h in engine.top_by_field(alias, "popularity", k=4, filter=available)]
        assert ids == ["item-1", "item-7", "item-3", "item-8"]
        # every item that passes, items without a value after the others
        everything = engine.top_by_field(alias, "popularity", k=100)
        assert [h.id for h in everything[:7]] == ["item-1", "item-9", "item-7", "item-3", "item-8", "item-0", "item-5"]
        assert sorted(h.id for h in everything[7:]) == ["item-2", "item-6"]
        assert [h.score for h in everything[7:]] == [0.0, 0.0]
        newest = engine.top_by_field(alias, "published_at", k=2)
        assert [h.id for h in newest] == ["item-9", "item-8"]
        assert newest[1].score == pytest.approx(datetime(2024, 1, 18, tzinfo=UTC).timestamp())
        for field in ("brand", "title", "no_such_field"):
            with pytest.raises(ValidationError) as err:
                engine.top_by_field(alias, field, k=3)
            assert err.value.field == "field"

    def test_prefix_suggest_lets_popularity_decide_between_close_matches(
        self, engine: SearchEngine, alias: str
    ) -> None:
        films = [
            ("Star Kid", 2.0),
            ("Star Wars: Episode IV - A New Hope", 335.0),
            ("Stardust", 40.0),
            ("Starman", None),
            ("The Daytrippers", 26.0),
            ("The Dark Knight", 341.0),
        ]
        self.write(engine, alias, [doc(i, t, popularity=p) for i, (t, p) in enumerate(films)])
        assert engine.prefix_suggest(alias, "star", k=3)[0].id == "item-1"  # not the shorter "Star Kid"
        assert engine.prefix_suggest(alias, "star", k=3, popularity_weight=0)[0].id == "item-0"  # the text alone
        assert engine.prefix_suggest(alias, "the da", k=2)[0].id == "item-5"
        # the typed text still decides: a title that matches every word beats a popular one that does not
        assert [h.id for h in engine.prefix_suggest(alias, "star ki", k=3)] == ["item-0"]
        assert engine.prefix_suggest(alias, "stardu", k=3)[0].id == "item-2"

    def test_prefix_suggest_matches_the_brand_below_the_title(self, engine: SearchEngine, alias: str) -> None:
        docs = [
            doc(1, "Jaws", brand="Steven Spielberg", popularity=50.0),
            doc(2, "Jurassic Park", brand="Steven Spielberg", popularity=60.0),
            doc(3, "Spielberg", brand="Susan Lacy", popularity=1.0),  # a title that matches, far less popular
            doc(4, "Stalker", brand="Andrei Tarkovsky", popularity=5.0),
        ]
        self.write(engine, alias, docs)
        found = [h.id for h in engine.prefix_suggest(alias, "spielb", k=5)]
        assert found[0] == "item-3" and set(found) == {"item-1", "item-2", "item-3"}  # the title first
        assert [h.id for h in engine.prefix_suggest(alias, "steven spielb", k=5)][:2] == ["item-2", "item-1"]
        assert {h.id for h in engine.prefix_suggest(alias, "stevn spielberg ", k=5)} == {"item-1", "item-2"}  # typo
        assert [h.id for h in engine.prefix_suggest(alias, "tarko", k=5)] == ["item-4"]
        # every typed word in one field: a title word and a brand word together match neither
        assert engine.prefix_suggest(alias, "jaws spielb", k=5) == []

    def test_prefix_suggest_asks_brands_only_when_titles_leave_the_answer_short(
        self, engine: SearchEngine, alias: str
    ) -> None:
        # a brand match scores 0.3 of a title match, but this one's item is popular enough to outrank the titles
        films = [doc(i, f"Stardust {i}") for i in range(4)] + [doc(9, "Jaws", brand="Steven Star", popularity=1e6)]
        self.write(engine, alias, films)
        # four titles leave five short: the brand is asked, and its match is in
        assert "item-9" in [h.id for h in engine.prefix_suggest(alias, "star", k=5)]
        # four titles fill four: no brand is asked, so it is not (one query of both would have ranked it in)
        assert "item-9" not in [h.id for h in engine.prefix_suggest(alias, "star", k=4)]

    def test_unicode_empty_and_64kb_inputs(self, engine: SearchEngine, alias: str) -> None:
        big = "lorem ipsum dolor " * (64 * 1024 // 18)
        docs = [
            doc(1, "Amélie ☕ 東京物語 🎬"),
            doc(2, "שלום עולם مرحبا بالعالم"),
            doc(3, "Long read", body=big[: 64 * 1024]),
        ]
        self.write(engine, alias, docs)
        assert [h.id for h in engine.keyword_search(alias, "Amélie", k=3)] == ["item-1"]
        assert "item-2" in [h.id for h in engine.keyword_search(alias, "שלום", k=3)]
        assert "item-2" in [h.id for h in engine.prefix_suggest(alias, "مرحبا بال", k=3)]
        assert "item-1" in [h.id for h in engine.prefix_suggest(alias, "amél", k=3)]
        assert engine.get(alias, ["item-3"])[0].item.body == big[: 64 * 1024]
        for empty in ("", "   ", "🎬", "!!!"):
            assert engine.keyword_search(alias, empty, k=3) == []
            assert engine.prefix_suggest(alias, empty, k=3) == []
        assert engine.keyword_search(alias, big, k=3)[0].id == "item-3"  # capped, not rejected by the engine
        assert isinstance(engine.prefix_suggest(alias, big, k=3), list)  # capped, not an error

    def test_accents_and_case_are_folded_in_keyword_search_and_suggest(self, engine: SearchEngine, alias: str) -> None:
        docs = [doc(1, "Les Misérables"), doc(2, "Crème Brûlée Café", brand="Señor Óptico"), doc(3, "Plain title")]
        self.write(engine, alias, docs)
        for query in ("miserables", "MISÉRABLES", "les miserables"):
            assert [h.id for h in engine.keyword_search(alias, query, k=3)] == ["item-1"], query
        assert [h.id for h in engine.keyword_search(alias, "creme brulee", k=3)] == ["item-2"]
        assert [h.id for h in engine.keyword_search(alias, "senor optico", k=3)] == ["item-2"]  # brand text
        for typed in ("miserab", "les mise", "misérab", "MISERABLES "):
            assert [h.id for h in engine.prefix_suggest(alias, typed, k=3)] == ["item-1"], typed
        assert [h.id for h in engine.prefix_suggest(alias, "creme bru", k=3)] == ["item-2"]
        assert [h.id for h in engine.prefix_suggest(alias, "cafe", k=3)] == ["item-2"]  # a completed word, typo room

    def test_alias_swap_is_atomic_for_a_reader_in_a_loop(self, engine: SearchEngine, alias: str) -> None:
        self.write(engine, alias, [doc(i, "Old generation film") for i in range(20)])
        old = engine.live_version(alias)
        new = engine.create_version(alias, dimension=DIM, model_id="test-model")
        engine.upsert(alias, [doc(i, "New generation film") for i in range(30)], version=new.version)
        engine.refresh(alias, version=new.version)
        assert old is not None
        seen: list[int] = []
        errors: list[BaseException] = []
        stop = threading.Event()

        def reader() -> None:
            while not stop.is_set():
                try:
                    seen.append(len(engine.keyword_search(alias, "generation film", k=50)))
                except BaseException as exc:
                    errors.append(exc)

        thread = threading.Thread(target=reader)
        thread.start()
        try:
            for i in range(10):
                engine.point_alias(alias, new.version if i % 2 == 0 else old.version)
                time.sleep(0.05)
            engine.point_alias(alias, new.version)
            time.sleep(0.1)
        finally:
            stop.set()
            thread.join()
        assert not errors, errors[:3]
        assert seen and set(seen) <= {20, 30}, sorted(set(seen))
        assert engine.count(alias) == 30
