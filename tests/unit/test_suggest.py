from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from services.core.domain import Item, ItemLabel
from services.core.engines.base import Document, Hit
from services.core.engines.embedded import EmbeddedEngine
from services.core.errors import NotFoundError, ValidationError
from services.core.filters import And, Filter, Term, Terms
from services.core.settings import CoreSettings
from services.search.cache import CachingEmbedder
from services.search.settings import SuggestSettings
from services.search.similar import SimilarItems
from services.search.suggest import (
    EmptyVectorSearches,
    Suggester,
    completion_for,
    edit_distance,
    normalise_typed,
    only_visible,
    vector_keys,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("title", "typed", "want"),
    [
        ("The Shawshank Redemption", "the shaws", "the shawshank redemption"),
        ("The Shawshank Redemption", "shawshenk red", "shawshank redemption"),  # typo in a completed word
        ("The Godfather: Part II", "godfater ", "godfather"),  # a clause ends at the colon
        ("The Lord of the Rings: The Two Towers", "lord of", "lord of the rings"),
        ("The Lord of the Rings: The Two Towers", "rings the tw", "rings: the two towers"),  # across a clause
        ("The Lord of the Rings", "the ring", "the rings"),  # a consecutive match beats an earlier gapped one
        ("The Dark Knight Rises", "knight dark", None),  # words out of order complete nothing
        ("Amélie ☕ 東京物語", "amél", "amélie ☕ 東京物語"),
        ("שלום עולם", "שלו", "שלום עולם"),
        ("Spider-Man 2", "spider m", "spider-man 2"),  # the title's own text between its words
        ("Harry Potter and the Philosopher's Stone", "harry pot", "harry potter and the philosopher's stone"),
        ("Alien vs. Predator", "alien", "alien vs. predator"),  # a full stop ends no clause
        ("Alien  \t Resurrection", "alien r", "alien resurrection"),
        ("Inception", "matrix", None),
        # accents and case folded for the match, kept in what is shown
        ("Les Misérables", "miserab", "misérables"),
        ("Les Misérables", "LES MISÉR", "les misérables"),
        ("Crème Brûlée Café", "creme brul", "crème brûlée café"),
        ("Die Straße", "die strasse", "die straße"),
        ("Søren Kierkegaard", "soren k", "søren kierkegaard"),
    ],
)
def test_completion_from_a_title(title: str, typed: str, want: str | None) -> None:
    from services.core.engines.base import suggest_parts

    completed, prefix = suggest_parts(normalise_typed(typed), 64)
    assert completion_for(title, completed, prefix) == want


def test_completion_is_capped_in_words() -> None:
    assert completion_for("a b c d e f g h", [], "a", max_words=3) == "a b c"


def test_edit_distance_counts_a_transposition_once_and_stops_at_the_limit() -> None:
    assert edit_distance("godfater", "godfather", 2) == 1
    assert edit_distance("shawshenk", "shawshank", 2) == 1
    assert edit_distance("teh", "the", 1) == 1
    assert edit_distance("abc", "xyzxyz", 2) == 3


def test_normalise_typed_keeps_one_trailing_space() -> None:
    assert normalise_typed("  the   dark ") == "the dark "
    assert normalise_typed("Ame\u0301l") == "Amél"
    assert normalise_typed("   ") == ""


class FakeEngine:
    """Answers prefix_suggest and vector_search from fixed lists, recording what it was asked."""

    def __init__(self, prefix: list[Item], fuzzy: list[Item], vector: list[tuple[Item, float]]) -> None:
        self._prefix, self._fuzzy, self._vector = prefix, fuzzy, vector
        self.calls: list[tuple[str, str, Filter | None]] = []
        self.token: object = None  # no state token (as OpenSearch): no answer is held

    def state_token(self, alias: str) -> object:
        return self.token

    def prefix_suggest(
        self, alias: str, text: str, *, k: int, filter: Filter | None = None, popularity_weight: float = 0.2
    ) -> list[Hit]:
        self.calls.append(("prefix", text, filter))
        found = self._fuzzy if text.endswith(" ") else self._prefix
        return [Hit(it.id, 10.0 - n, it) for n, it in enumerate(found[:k])]

    def vector_search(self, alias: str, vector: np.ndarray, *, k: int, filter: Filter | None = None) -> list[Hit]:
        self.calls.append(("vector", "", filter))
        return [Hit(it.id, score, it) for it, score in self._vector[:k]]


class FakeEmbedder:
    def __init__(self) -> None:
        self.texts: list[str] = []

    @property
    def model_id(self) -> str:
        return "fake"

    @property
    def dimension(self) -> int:
        return 2

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts.extend(texts)
        return np.ones((len(texts), 2), dtype=np.float32)


def it(id: str, title: str, popularity: float | None = None, available: bool = True, brand: str | None = None) -> Item:
    return Item.parse({"id": id, "title": title, "popularity": popularity, "available": available, "brand": brand})


def test_suggest_fuses_legs_drops_unavailable_and_duplicates() -> None:
    engine = FakeEngine(
        prefix=[
            it("a", "Godfather"),
            it("gone", "Godfather Returns", available=False),
            it("a2", "godfather  "),
        ],
        fuzzy=[it("b", "The Godfather Part II"), it("a", "Godfather")],
        vector=[(it("c", "Mafia Story"), 0.5), (it("weak", "Cooking Show"), 0.1)],
    )
    embedder = FakeEmbedder()
    with ThreadPoolExecutor(3) as pool:
        s = Suggester(engine, "items", embedder, SuggestSettings(popularity_weight=0.0), executor=pool)  # type: ignore[arg-type]
        result = s.run("godfathr", size=5)
    ids = [i.id for i in result.items]
    assert "gone" not in ids  # unavailable, even though the engine returned it
    assert "a2" not in ids  # same title (case, spaces) and brand as "a": a duplicate
    assert "weak" not in ids  # vector hit under the similarity floor
    assert ids[0] == "a" and set(ids) == {"a", "b", "c"}
    assert result.items[0].sources == ("prefix", "fuzzy")
    assert [c.text for c in result.completions] == ["godfather", "godfather part ii"]
    assert embedder.texts == ["godfathr"]
    for _, _, flt in engine.calls:
        assert flt == Term("available", True)


def test_a_hit_matched_by_its_brand_completes_the_brand_and_a_title_match_its_title() -> None:
    engine = FakeEngine(
        prefix=[
            it("jaws", "Jaws", brand="Steven Spielberg"),
            it("et", "E.T. the Extra-Terrestrial", brand="Steven Spielberg"),
            it("spy", "Bridge of Spies", brand="Steven Spielberg"),
            it("spiel", "Spielberg: A Life", brand="Susan Lacy"),
        ],
        fuzzy=[],
        vector=[],
    )
    result = Suggester(engine, "items", None, SuggestSettings(popularity_weight=0.0)).run("spielb")  # type: ignore[arg-type]
    assert [i.id for i in result.items] == ["jaws", "et", "spy", "spiel"]
    # the brand once, however many of its items matched; a title that holds the words completes itself
    assert [c.text for c in result.completions] == ["steven spielberg", "spielberg"]  # its clause
    assert [c.text for c in Suggester(engine, "items", None, SuggestSettings()).run("zzz").completions] == []


def test_popularity_is_a_prior() -> None:
    engine = FakeEngine(prefix=[it("rare", "Star Trek", 1), it("hit", "Star Wars", 100000)], fuzzy=[], vector=[])
    flat = Suggester(engine, "items", None, SuggestSettings(popularity_weight=0.0)).run("star")  # type: ignore[arg-type]
    prior = Suggester(engine, "items", None, SuggestSettings(popularity_weight=0.5)).run("star")  # type: ignore[arg-type]
    assert [i.id for i in flat.items] == ["rare", "hit"]
    assert [i.id for i in prior.items] == ["hit", "rare"]


def test_vector_leg_is_skipped_for_one_or_two_characters_and_fuzzy_for_short_words() -> None:
    engine = FakeEngine(prefix=[it("a", "Alien")], fuzzy=[], vector=[])
    embedder = FakeEmbedder()
    s = Suggester(engine, "items", embedder, SuggestSettings())  # type: ignore[arg-type]
    s.run("al")
    assert embedder.texts == [] and [c[0] for c in engine.calls] == ["prefix"]
    engine.calls.clear()
    s.run("ali")
    assert embedder.texts == ["ali"] and [c[0] for c in engine.calls] == ["prefix", "vector"]
    engine.calls.clear()
    s.run("alie")
    assert [c[1] for c in engine.calls if c[0] == "prefix"] == ["alie", "alie "]


def test_the_fuzzy_leg_runs_when_the_prefix_finds_too_little() -> None:
    many = [it(f"s{n}", f"Star {n}") for n in range(6)]
    engine = FakeEngine(prefix=many, fuzzy=[it("typo", "Stair")], vector=[])
    s = Suggester(engine, "items", None, SuggestSettings())  # type: ignore[arg-type]
    result = s.run("star", size=5)  # six prefix hits fill an answer of five: no typo to forgive
    assert [c[1] for c in engine.calls] == ["star"] and "typo" not in [i.id for i in result.items]
    assert next(leg for leg in result.legs if leg.name == "fuzzy").reason == "prefix_found_enough"
    engine.calls.clear()
    assert "typo" in [i.id for i in s.run("star", size=10).items]  # six do not fill ten
    assert [c[1] for c in engine.calls] == ["star", "star "]
    engine.calls.clear()
    always = Suggester(engine, "items", None, SuggestSettings(fuzzy_fallback=False))  # type: ignore[arg-type]
    always.run("star", size=5)
    assert sorted(c[1] for c in engine.calls) == ["star", "star "]  # beside the prefix leg, whatever it finds


def test_the_callers_filter_is_kept_with_availability() -> None:
    flt = Term("brand", "Acme")
    assert only_visible(flt) == And((Term("available", True), flt))
    engine = FakeEngine(prefix=[], fuzzy=[], vector=[])
    Suggester(engine, "items", None, SuggestSettings()).run("acme", filter=flt)  # type: ignore[arg-type]
    assert engine.calls[0][2] == only_visible(flt)


def test_suggest_refuses_bad_input() -> None:
    s = Suggester(FakeEngine([], [], []), "items", None, SuggestSettings())  # type: ignore[arg-type]
    for text, kwargs, field in [
        ("   ", {}, "q"),
        ("a", {"size": 0}, "size"),
        ("a", {"completions": 51}, "completions"),
    ]:
        with pytest.raises(ValidationError) as err:
            s.run(text, **kwargs)  # type: ignore[arg-type]
        assert err.value.field == field


def test_similar_excludes_the_item_honours_filters_and_404s(tmp_path: Path) -> None:
    engine = EmbeddedEngine(CoreSettings(data_dir=tmp_path))
    try:
        v = engine.create_version("items", dimension=8, model_id="m")
        engine.point_alias("items", v.version)
        rng = np.random.default_rng(0)
        base = rng.normal(size=8).astype(np.float32)
        docs = [
            Document(
                Item.parse({"id": f"i{n}", "brand": "even" if n % 2 == 0 else "odd"}),
                (base + 0.1 * n * rng.normal(size=8)).astype(np.float32),
            )
            for n in range(12)
        ]
        assert engine.upsert("items", docs).ok
        similar = SimilarItems(engine, "items")
        result = similar.run("i0", size=5)
        assert len(result.items) == 5 and "i0" not in [h.id for h in result.items]
        assert [h.rank for h in result.items] == [1, 2, 3, 4, 5]
        evens = similar.run("i0", size=20, filter=Term("brand", "even"))
        assert {h.id for h in evens.items} == {f"i{n}" for n in range(2, 12, 2)}
        with pytest.raises(NotFoundError):
            similar.run("nope")
    finally:
        engine.close()


class GatedEmbedder(FakeEmbedder):
    """Embeds only once the test opens the gate; tells when an embedding has started and finished."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.started = threading.Event()
        self.done = threading.Event()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.started.set()
        assert self.gate.wait(10), "the test never opened the gate"
        out = super().embed(texts)
        self.done.set()
        return out


def test_suggest_never_waits_for_the_model_and_uses_the_vector_once_cached() -> None:
    engine = FakeEngine(prefix=[it("a", "Alien")], fuzzy=[], vector=[(it("b", "Aliens"), 0.9)])
    model = GatedEmbedder()
    cached = CachingEmbedder(model)
    with ThreadPoolExecutor(3) as pool:
        s = Suggester(engine, "items", cached, SuggestSettings(), executor=pool)  # type: ignore[arg-type]
        # The model is blocked: were the request waiting for it, this call would not return.
        first = s.run("alien")
        assert [i.id for i in first.items] == ["a"]
        vector_leg = next(leg for leg in first.legs if leg.name == "vector")
        assert vector_leg.skipped and vector_leg.reason == "no_query_vector" and vector_leg.hits == 0
        assert "vector" not in [c[0] for c in engine.calls]
        assert model.started.wait(10)  # ... and the text is being embedded in the background
        model.gate.set()
        assert model.done.wait(10)
        for _ in range(1000):  # the worker stores the vector just after the model returns
            if cached.cached("alien") is not None:
                break
            time.sleep(0.01)
        second = s.run("alien")
        # the next keystroke: the word's earlier vector stands in while its own is embedded
        third = s.run("aliens")
    cached.close()
    assert [i.id for i in second.items] == ["a", "b"]
    assert all(leg.skipped is None and leg.reason is None for leg in second.legs)
    assert [i.id for i in third.items] == ["a", "b"]
    assert model.texts == ["alien", "aliens"] or model.texts == ["alien"]  # "aliens" may still be on its way


def test_background_embedding_keeps_only_the_latest_request() -> None:
    model = GatedEmbedder()
    cached = CachingEmbedder(model)
    cached.embed_later("int")
    assert model.started.wait(10)  # "int" is in flight
    for text in ("inte", "inter", "inters"):  # typed while the model is busy: only the last one is kept
        cached.embed_later(text)
    model.done.clear()
    model.gate.set()
    for _ in range(1000):
        if cached.cached("inters") is not None:
            break
        time.sleep(0.01)
    cached.close()
    assert model.texts == ["int", "inters"]
    assert cached.cached("inte") is None and cached.cached("int") is not None


def test_a_waiting_embedding_starts_only_once_typing_pauses() -> None:
    model = FakeEmbedder()
    cached = CachingEmbedder(model)
    cached.embed_later("inte", idle_s=600)  # would start in ten minutes, if nothing newer came
    time.sleep(0.2)  # room for a worker that ignored the pause to start it now
    assert model.texts == []
    cached.embed_later("inter")  # the pause is over: the latest text goes, the one before never does
    for _ in range(1000):
        if cached.cached("inter") is not None:
            break
        time.sleep(0.01)
    cached.close()
    assert model.texts == ["inter"]


def test_a_held_vector_is_not_embedded_again_and_a_short_text_never_is() -> None:
    model = FakeEmbedder()
    cached = CachingEmbedder(model)
    cached.embed(["ali"])
    engine = FakeEngine(prefix=[it("a", "Alien")], fuzzy=[], vector=[(it("b", "Aliens"), 0.9)])
    s = Suggester(engine, "items", cached, SuggestSettings())  # type: ignore[arg-type]
    assert [i.id for i in s.run("ali").items] == ["a", "b"]
    s.run("al")
    cached.close()
    assert model.texts == ["ali"]


@pytest.mark.parametrize(
    ("query", "keys"),
    [
        ("inter", ["inter", "inte", "int"]),
        ("the dark kn", ["the dark kn", "the dark k", "the dark"]),  # never a vector of fewer completed words
        ("al", []),
    ],
)
def test_vector_keys_are_the_query_then_its_earlier_keystrokes(query: str, keys: list[str]) -> None:
    assert vector_keys(query, 3) == keys


class LazyEngine(FakeEngine):
    """Prefix hits that build their items only when read (the ids built, in order, in `built`), with the
    items' popularity, and with their labels when `labels` is set."""

    def __init__(self, items: list[Item], labels: bool = False) -> None:
        super().__init__([], [], [])
        self.items, self.labels = items, labels
        self.built: list[str] = []

    def _loader(self, item: Item) -> Callable[[], Item]:
        def load() -> Item:
            self.built.append(item.id)
            return item

        return load

    def prefix_suggest(
        self, alias: str, text: str, *, k: int, filter: Filter | None = None, popularity_weight: float = 0.2
    ) -> list[Hit]:
        label = ItemLabel.of if self.labels else lambda _: None
        return [Hit(i.id, 1.0, load=self._loader(i), popularity=i.popularity, label=label(i)) for i in self.items[:k]]


def test_suggest_ranks_by_the_hits_popularity_and_builds_only_the_items_it_looks_at() -> None:
    """The engine gives each hit's popularity; an item is built only when the answer looks at it."""
    engine = LazyEngine([it(f"i{n}", f"Star {n}", popularity=float(n)) for n in range(20)])
    s = Suggester(engine, "items", None, SuggestSettings(popularity_weight=1.0))  # type: ignore[arg-type]
    result = s.run("sta", size=2, completions=1)
    # the prior puts the most popular first, though the engine listed it last; two items were looked at
    assert [i.id for i in result.items] == ["i19", "i18"]
    assert [c.text for c in result.completions] == ["star 19"]
    assert sorted(engine.built) == ["i18", "i19"]


def test_with_the_engines_labels_only_the_items_shown_are_built() -> None:
    """Duplicates and completions are decided on the labels the engine gives: walking 20 hits of 3 titles for
    five completions builds the two items the answer shows, and none of the rest."""
    titles = ["Star Wars", "Star Wars", "Star Trek", "Star Wars", "Stardust"]
    items = [it(f"i{n}", titles[n % 5], popularity=float(20 - n), available=n != 1) for n in range(20)]
    engine = LazyEngine(items, labels=True)
    s = Suggester(engine, "items", None, SuggestSettings(popularity_weight=1.0))  # type: ignore[arg-type]
    result = s.run("sta", size=2, completions=5)
    assert [i.id for i in result.items] == ["i0", "i2"]  # i1 is unavailable, i3 a duplicate of i0
    assert [i.item.title for i in result.items] == ["Star Wars", "Star Trek"]
    assert [c.text for c in result.completions] == ["star wars", "star trek", "stardust"]
    assert engine.built == ["i0", "i2"]


def test_a_held_vector_that_found_nothing_similar_is_not_searched_again_while_it_is_fresh() -> None:
    model = FakeEmbedder()
    cached = CachingEmbedder(model)
    cached.embed(["the", "star"])  # the completed words' vectors, held while the next word is typed
    weak = FakeEngine(prefix=[it("a", "The Sting")], fuzzy=[], vector=[(it("b", "Noise"), 0.1)])
    # the typed texts' own vectors would be embedded in ten minutes: "the" stands in for each of them
    settings = SuggestSettings(vector_min_score=0.3, vector_embed_idle_ms=600_000)
    s = Suggester(weak, "items", cached, settings)  # type: ignore[arg-type]

    def vector_calls() -> int:
        return sum(1 for c in weak.calls if c[0] == "vector")

    s.run("the s")  # the vector of "the" stands in, and finds nothing above the floor
    assert vector_calls() == 1
    again = s.run("the st")  # the same vector, the same filter: not searched again
    assert vector_calls() == 1
    (leg,) = [g for g in again.legs if g.name == "vector"]
    assert leg.skipped is not None and "'the' found nothing above 0.3" in leg.skipped
    assert leg.reason == "vector_found_nothing"
    s.run("the st", filter=Term("brand", "x"))  # another filter may find something: searched
    assert vector_calls() == 2
    close = FakeEngine(prefix=[it("a", "Star Wars")], fuzzy=[], vector=[(it("b", "Star Trek"), 0.8)])
    t = Suggester(close, "items", cached, settings)  # type: ignore[arg-type]
    for typed in ("star w", "star wa"):  # no state token: a search that found hits is run on every keystroke
        assert [i.id for i in t.run(typed).items] == ["a", "b"]
    assert sum(1 for c in close.calls if c[0] == "vector") == 2
    cached.close()


def test_empty_vector_searches_expire_and_stay_bounded() -> None:
    now = [0.0]
    memo = EmptyVectorSearches(ttl_s=60, maxsize=2, clock=lambda: now[0])
    visible = Term("available", True)
    memo.found_empty("the", visible)
    now[0] = 59.0
    assert memo.seconds_since("the", visible) == 59.0
    assert memo.seconds_since("the", Term("brand", "x")) is None
    now[0] = 61.0
    assert memo.seconds_since("the", visible) is None  # a write since could have brought a close item
    for text in ("a", "b", "c"):
        memo.found_empty(text, visible)
    assert memo.seconds_since("a", visible) is None and memo.seconds_since("c", visible) == 0.0
    off = EmptyVectorSearches(ttl_s=0)
    off.found_empty("the", visible)
    assert off.seconds_since("the", visible) is None
    unhashable = Terms("id", ["a"])  # type: ignore[arg-type]  # a list where a tuple belongs: never remembered
    memo.found_empty("the", unhashable)
    assert memo.seconds_since("the", unhashable) is None


class SlowVectorEngine(FakeEngine):
    """Its k-NN search takes 300 ms: far past a suggest budget of a few ms."""

    def vector_search(self, alias: str, vector: np.ndarray, *, k: int, filter: Filter | None = None) -> list[Hit]:
        time.sleep(0.3)
        return super().vector_search(alias, vector, k=k, filter=filter)


def test_a_vector_leg_past_its_budget_is_left_out_with_its_reason() -> None:
    engine = SlowVectorEngine(prefix=[it("a", "Alien")], fuzzy=[], vector=[(it("b", "Aliens"), 0.9)])
    with ThreadPoolExecutor(2) as pool:
        s = Suggester(engine, "items", FakeEmbedder(), SuggestSettings(vector_budget_ms=5), executor=pool)  # type: ignore[arg-type]
        result = s.run("alien")
    assert [i.id for i in result.items] == ["a"]
    (leg,) = [g for g in result.legs if g.name == "vector"]
    assert (leg.hits, leg.reason, leg.skipped) == (0, "over_budget", "over its 5 ms budget")
    assert 5 <= leg.ms < 300


def _prefix_calls(engine: FakeEngine) -> int:
    return sum(c[0] == "prefix" for c in engine.calls)


def test_a_keystroke_asked_again_gets_the_held_answer_until_the_engine_state_changes() -> None:
    engine = FakeEngine(prefix=[it("a", "Godfather"), it("b", "Godfather Part II")], fuzzy=[], vector=[])
    engine.token = (1, 10)  # a version and its last applied change, as the embedded engine gives
    s = Suggester(engine, "items", None, SuggestSettings())  # type: ignore[arg-type]
    first, again = s.run("god"), s.run("god")
    assert (first.cached, again.cached) == (False, True)
    assert (again.items, again.completions, again.legs) == (first.items, first.completions, first.legs)
    assert again.query_id != first.query_id  # every answer is its own, for the interactions that quote it
    assert _prefix_calls(engine) == 1
    # another size, filter or text is another answer
    assert not s.run("god", size=2).cached and not s.run("God").cached
    assert not s.run("god", filter=Term("brand", "acme")).cached
    assert _prefix_calls(engine) == 4
    engine.token = (1, 11)  # a write: nothing held before it is served
    assert not s.run("god").cached and _prefix_calls(engine) == 5
    assert s.run("god").cached and _prefix_calls(engine) == 5
    info = s.answer_cache_info()
    assert info is not None and (info.hits, info.size) == (2, 5)


def test_no_answer_is_held_without_a_state_token_or_with_the_cache_off() -> None:
    engine = FakeEngine(prefix=[it("a", "Godfather")], fuzzy=[], vector=[])
    s = Suggester(engine, "items", None, SuggestSettings())  # type: ignore[arg-type]
    assert not s.run("god").cached and not s.run("god").cached  # no token (OpenSearch): nothing says "unchanged"
    engine.token = 1
    off = Suggester(engine, "items", None, SuggestSettings(answer_cache=0))  # type: ignore[arg-type]
    assert not off.run("god").cached and not off.run("god").cached
    assert off.answer_cache_info() is None and _prefix_calls(engine) == 4


def test_an_answer_made_with_an_earlier_keystrokes_vector_is_held_only_until_the_texts_own_is() -> None:
    """While "alie"'s vector is being embedded, the vector of "ali" stands in, and asking "alie" again gets that
    answer held (its vector still asked for). Once "alie"'s own vector is held, the answer is made anew with it."""
    engine = FakeEngine(prefix=[it("a", "Alien")], fuzzy=[], vector=[(it("b", "Aliens"), 0.9)])
    engine.token = 1
    model = GatedEmbedder()
    model.gate.set()
    cached = CachingEmbedder(model)
    cached.embed(["ali"])
    model.gate.clear()
    model.started.clear()
    s = Suggester(engine, "items", cached, SuggestSettings(vector_embed_idle_ms=0))  # type: ignore[arg-type]
    early, early_again = s.run("alie"), s.run("alie")
    assert [i.id for i in early.items] == ["a", "b"] and (early.cached, early_again.cached) == (False, True)
    assert model.started.wait(10)  # "alie" is being embedded meanwhile
    model.gate.set()
    for _ in range(1000):
        if cached.cached("alie") is not None:
            break
        time.sleep(0.01)
    _wait_for(lambda: _hits_held(s) == 2)  # the vector of "alie" is searched on the embedder's thread, and held
    made, held = s.run("alie"), s.run("alie")
    cached.close()
    assert (made.cached, held.cached) == (False, True)
    assert next(g for g in made.legs if g.name == "vector").held  # made anew, with the hits searched ahead
    assert sum(c[0] == "vector" for c in engine.calls) == 2  # the stand-in's search, then the text's own


def test_an_answer_whose_vector_leg_ran_over_budget_is_not_held() -> None:
    engine = SlowVectorEngine(prefix=[it("a", "Alien")], fuzzy=[], vector=[(it("b", "Aliens"), 0.9)])
    engine.token = 1
    with ThreadPoolExecutor(3) as pool:
        s = Suggester(engine, "items", FakeEmbedder(), SuggestSettings(vector_budget_ms=5), executor=pool)  # type: ignore[arg-type]
        first, second = s.run("alien"), s.run("alien")
    assert any(leg.reason == "over_budget" for leg in first.legs)
    assert not second.cached


def test_held_answers_age_out_and_the_least_recent_goes_first() -> None:
    from services.search.answer_cache import AnswerCache

    now = [0.0]
    cache: AnswerCache[str] = AnswerCache(maxsize=2, ttl_s=60, clock=lambda: now[0])
    cache.put("a", "A")
    cache.put("b", "B")
    assert cache.get("a") == "A"  # "a" is now the most recent
    cache.put("c", "C")
    assert (cache.get("b"), cache.get("a"), cache.get("c")) == (None, "A", "C")
    now[0] = 60.5
    assert cache.get("a") is None and cache.info().size == 1


def test_asking_whether_an_answer_is_held_counts_nothing_and_keeps_its_place() -> None:
    from services.search.answer_cache import AnswerCache

    now = [0.0]
    cache: AnswerCache[str] = AnswerCache(maxsize=2, ttl_s=60, clock=lambda: now[0])
    cache.put("a", "A")
    cache.put("b", "B")
    assert cache.holds("a") and not cache.holds("z")
    cache.put("c", "C")  # "a" stayed the least recent: it goes
    assert not cache.holds("a") and cache.holds("b")
    assert (cache.info().hits, cache.info().misses) == (0, 0)
    now[0] = 60.5
    assert not cache.holds("b")


def _vector_calls(engine: FakeEngine) -> int:
    return sum(c[0] == "vector" for c in engine.calls)


def _hits_held(s: Suggester) -> int:
    info = s.vector_hits_info()
    assert info is not None
    return info.size


def _wait_for(done: Callable[[], bool]) -> None:
    for _ in range(1000):
        if done():
            return
        time.sleep(0.01)
    raise AssertionError("the background work never finished")


def test_the_keystrokes_that_share_a_held_vector_share_its_search_until_the_state_changes() -> None:
    cached = CachingEmbedder(FakeEmbedder())
    cached.embed(["star"])  # "star w", "star wa", ... all stand this vector in for their own
    engine = FakeEngine(prefix=[it("a", "Star Wars")], fuzzy=[], vector=[(it("b", "Star Trek"), 0.8)])
    engine.token = (1, 10)
    settings = SuggestSettings(answer_cache=0, vector_embed_idle_ms=600_000)  # nothing embedded meanwhile
    s = Suggester(engine, "items", cached, settings)  # type: ignore[arg-type]
    first, second = s.run("star w"), s.run("star wa")
    assert [i.id for i in first.items] == [i.id for i in second.items] == ["a", "b"]
    assert "vector" in second.items[1].sources
    (leg,) = [g for g in second.legs if g.name == "vector"]
    assert (leg.held, leg.hits, leg.skipped) == (True, 1, None)
    assert not next(g for g in first.legs if g.name == "vector").held
    assert _vector_calls(engine) == 1
    s.run("star wa", filter=Term("brand", "x"))  # another filter: another search
    assert _vector_calls(engine) == 2
    engine.token = (1, 11)  # a write: the hits searched before it are not used
    third = s.run("star war")
    assert not next(g for g in third.legs if g.name == "vector").held and _vector_calls(engine) == 3
    off = Suggester(engine, "items", cached, settings.model_copy(update={"vector_hits_cache": 0}))  # type: ignore[arg-type]
    off.run("star w")
    off.run("star wa")
    cached.close()
    assert _vector_calls(engine) == 5


def test_a_vector_embedded_while_the_typist_pauses_is_searched_there_for_the_next_keystroke() -> None:
    model = GatedEmbedder()
    model.gate.set()
    cached = CachingEmbedder(model)
    engine = FakeEngine(prefix=[it("a", "Star Wars")], fuzzy=[], vector=[(it("b", "Star Trek"), 0.8)])
    engine.token = 1
    with ThreadPoolExecutor(3) as pool:
        s = Suggester(engine, "items", cached, SuggestSettings(answer_cache=0, vector_embed_idle_ms=0), executor=pool)  # type: ignore[arg-type]
        s.run("star")  # no vector yet: embedded in the background, then searched there
        _wait_for(lambda: _hits_held(s) == 1)
        assert cached.cached("star") is not None and _vector_calls(engine) == 1
        model.gate.clear()  # "star w" waits at the model, so that nothing is searched ahead meanwhile
        nxt = s.run("star w")  # stands the vector of "star" in: its hits are ready, nothing searched now
        (leg,) = [g for g in nxt.legs if g.name == "vector"]
        assert (leg.held, leg.hits, leg.ms) == (True, 1, 0.0)
        assert [i.id for i in nxt.items] == ["a", "b"]
        assert _vector_calls(engine) == 1
        info = s.vector_hits_info()  # the keystrokes' lookups only: the search ahead's check is not one
        assert info is not None and (info.hits, info.misses) == (1, 0)
        # "star w" went to the embedder in turn; once it and its search are done, a write makes them stale
        model.gate.set()
        _wait_for(lambda: _hits_held(s) == 2)
        engine.token = 2
        model.gate.clear()  # "star wa" waits at the model, so that only the keystroke searches now
        later = s.run("star wa")
        assert not next(g for g in later.legs if g.name == "vector").held and _vector_calls(engine) == 3
        model.gate.set()
    cached.close()
    assert model.texts[:2] == ["star", "star w"]


def test_nothing_is_searched_ahead_without_a_state_token() -> None:
    cached = CachingEmbedder(FakeEmbedder())
    engine = FakeEngine(prefix=[it("a", "Star Wars")], fuzzy=[], vector=[(it("b", "Star Trek"), 0.8)])
    s = Suggester(engine, "items", cached, SuggestSettings(vector_embed_idle_ms=0))  # type: ignore[arg-type]
    s.run("star")
    _wait_for(lambda: cached.cached("star") is not None)
    time.sleep(0.1)  # room for a search ahead, were there one
    assert _vector_calls(engine) == 0  # OpenSearch shows a write at its refresh: hits held could be stale
    cached.close()


def test_a_failure_after_a_background_embedding_is_logged_and_the_next_text_still_goes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cached = CachingEmbedder(FakeEmbedder())

    def boom(vec: np.ndarray) -> None:
        raise RuntimeError("engine down")

    got: list[np.ndarray] = []
    cached.embed_later("alien", then=boom)
    _wait_for(lambda: cached.cached("alien") is not None)
    cached.embed_later("aliens", then=got.append)
    _wait_for(lambda: bool(got))
    cached.close()
    assert got[0].shape == (2,)
    assert any("engine down" in (r.exc_text or "") or "alien" in r.getMessage() for r in caplog.records)


def test_background_work_stops_with_the_embedder_even_mid_embedding() -> None:
    model = GatedEmbedder()
    cached = CachingEmbedder(model)
    got: list[np.ndarray] = []
    cached.embed_later("alien", then=got.append)
    assert model.started.wait(10)
    cached.close()  # e.g. its services retired while the model runs
    model.gate.set()
    assert model.done.wait(10)
    time.sleep(0.1)  # room for a `then` that ignored the close
    assert got == []


def test_a_retired_suggester_forgets_what_it_held() -> None:
    cached = CachingEmbedder(FakeEmbedder())
    cached.embed(["star"])
    engine = FakeEngine(prefix=[it("a", "Star Wars")], fuzzy=[], vector=[(it("b", "Star Trek"), 0.8)])
    engine.token = 1
    s = Suggester(engine, "items", cached, SuggestSettings(vector_embed_idle_ms=600_000))  # type: ignore[arg-type]
    s.run("star w")
    assert s.run("star w").cached and _hits_held(s) == 1
    s.forget()
    assert not s.run("star w").cached and _vector_calls(engine) == 2
    cached.close()
