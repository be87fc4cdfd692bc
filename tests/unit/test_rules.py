"""Business rules: each action, validity windows, scopes, conflicts, the order of application, and the
durable store; the re-ranker runs over small scored lists with an in-memory item and vector lookup."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError as PydanticValidationError

from services.core.domain import CatalogSchema, Item
from services.core.errors import NotFoundError, ValidationError
from services.core.filters import And, Term, parse_filter
from services.rules.matching import filter_includes, matches, query_matches
from services.rules.model import RuleIn
from services.rules.reranker import RulesReranker
from services.rules.service import RuleConflictError, RuleService
from services.rules.store import RuleStore
from services.search.types import Candidate, FusedCandidate, ScoredCandidate, SearchQuery

pytestmark = pytest.mark.unit
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def make_item(i: int, **fields: Any) -> Item:
    return Item.parse({"id": f"i{i}", "title": f"Item {i}", **fields})


ITEMS = {
    it.id: it
    for it in [
        make_item(1, brand="Acme", categories=["Shoes"], published_at="2026-05-31T12:00:00Z"),
        make_item(2, brand="Acme", categories=["Shoes"], published_at="2025-06-01T12:00:00Z"),
        make_item(3, brand="Acme", categories=["Bags"]),
        make_item(4, brand="Zen", categories=["Shoes"], available=False),
        make_item(5, brand="Zen", categories=["Bags"]),
        make_item(6, brand="Other", categories=["Hats"]),
        make_item(99, brand="Far", categories=["Shoes"]),  # in the catalog, never retrieved
    ]
}
VECTORS = {
    "i1": np.array([1, 0, 0], np.float32),
    "i2": np.array([0.99, 0.1, 0], np.float32),  # nearly i1
    "i3": np.array([0.98, 0.15, 0], np.float32),  # nearly i1 too
    "i4": np.array([0, 1, 0], np.float32),
    "i5": np.array([0, 0, 1], np.float32),
    "i6": np.array([0, 0.7, 0.7], np.float32),
}


def scored(ids: Sequence[int] = (1, 2, 3, 4, 5, 6)) -> list[ScoredCandidate]:
    out = []
    for rank, i in enumerate(ids, start=1):
        it = ITEMS[f"i{i}"]
        fc = FusedCandidate(Candidate(it.id, it, {"keyword": 10.0 - rank}, {"keyword": rank}), 1.0 / rank, rank)
        out.append(ScoredCandidate(fc, 10.0 - rank, rank))
    return out


def lookup_items(ids: Sequence[str]) -> Mapping[str, Item]:
    return {i: ITEMS[i] for i in ids if i in ITEMS}


def lookup_vectors(ids: Sequence[str]) -> Mapping[str, Any]:
    return {i: VECTORS[i] for i in ids if i in VECTORS}


class Env:
    def __init__(self, path: Path) -> None:
        self.store = RuleStore(path)
        self.service = RuleService(self.store, CatalogSchema())
        self.now = NOW
        self.reranker = RulesReranker(
            self.store, CatalogSchema(), items=lookup_items, vectors=lookup_vectors, clock=lambda: self.now
        )

    def add(self, **rule: Any) -> str:
        return self.service.create(RuleIn.model_validate({"name": rule.pop("name", "r"), **rule})).id

    def ids(self, text: str = "red shoes", flt: Any = None, cands: list[ScoredCandidate] | None = None) -> list[str]:
        query = SearchQuery(text, parse_filter(flt) if flt else None)
        return [c.id for c in self.reranker.run(query, cands if cands is not None else scored())]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path / "rules.sqlite")
    yield e
    e.store.close()


# ---- actions --------------------------------------------------------------------------------------------


def test_no_rule_keeps_the_scored_order_and_scores(env: Env) -> None:
    out = env.reranker.run(SearchQuery("x"), scored())
    assert [c.id for c in out] == ["i1", "i2", "i3", "i4", "i5", "i6"] and out[0].score == 9.0 and not out[0].effects


def test_pin_puts_items_at_their_position_and_explains_the_move(env: Env) -> None:
    rid = env.add(action="pin", items=["i5", "i6"], position=1, when={"query": "Red  SHOES"})
    out = env.reranker.run(SearchQuery("red shoes"), scored())
    assert [c.id for c in out][:3] == ["i5", "i6", "i1"]
    effect = out[0].effects[0]
    assert (effect.rule, effect.action, effect.delta) == (rid, "pin", 4.0) and "5 -> 1" in effect.detail
    assert out[0].score >= out[2].score  # pinned items take the displaced item's score
    assert env.ids("blue shoes")[:2] == ["i1", "i2"]  # exact query rule: another query is untouched


def test_pin_of_an_item_not_retrieved_fetches_it_but_respects_the_filter(env: Env) -> None:
    env.add(action="pin", items=["i99"], position=2)
    assert env.ids()[:3] == ["i1", "i99", "i2"]
    assert "i99" not in env.ids(flt={"term": {"categories": "Bags"}})  # the search's filter excludes it


def test_hide_drops_items_by_id_or_by_target_filter(env: Env) -> None:
    env.add(action="hide", items=["i1"])
    env.add(
        name="no zen", action="hide", target={"term": {"brand": "Zen"}}, when={"query": "shoes", "match": "contains"}
    )
    assert env.ids("red shoes") == ["i2", "i3", "i6"]
    assert env.ids("hats") == ["i2", "i3", "i4", "i5", "i6"]  # the contains rule needs the word "shoes"


def test_hidden_is_one_filter_of_the_hide_rules_in_scope_for_suggest_similar_and_recommendations(env: Env) -> None:
    def hidden(text: str | None, flt: Any = None) -> set[str]:
        found = env.reranker.hidden(text, parse_filter(flt) if flt else None)
        return {i for i, item in ITEMS.items() if found is not None and matches(found, item)}

    assert env.reranker.hidden("red shoes", None) is None  # no rule: the callers' filters stay as they are
    env.add(action="hide", items=["i1"])
    env.add(
        name="no zen", action="hide", target={"term": {"brand": "Zen"}}, when={"query": "shoes", "match": "contains"}
    )
    env.add(
        name="no hats here",
        action="hide",
        target={"term": {"categories": "Hats"}},
        when={"filter": {"term": {"brand": "Other"}}},
    )
    env.add(action="boost", items=["i2"], amount=1)  # not a hide: never in the filter
    assert hidden("red shoes") == {"i1", "i4", "i5"}
    assert hidden("hats") == {"i1"}
    assert hidden(None) == {"i1"}  # no query (similar items, recommendations): rules without one only
    assert hidden(None, {"term": {"brand": "Other"}}) == {"i1", "i6"}  # a filter context still applies
    env.now = NOW - timedelta(days=1)
    env.add(action="hide", items=["i3"], valid_from=NOW.isoformat())  # not valid yet at that moment
    assert hidden(None) == {"i1"}


def test_a_rule_for_a_query_holds_for_it_with_or_without_accents(env: Env) -> None:
    env.add(action="hide", items=["i1"], when={"query": "Les Misérables"})
    env.add(name="c", action="hide", items=["i2"], when={"query": "creme", "match": "contains"})
    assert "i1" not in env.ids("les miserables") and "i1" not in env.ids("LES MISÉRABLES")
    assert "i2" not in env.ids("crème brûlée") and env.ids("other")[:2] == ["i1", "i2"]


def test_boost_and_bury_move_scores_by_their_amount(env: Env) -> None:
    env.add(action="boost", items=["i6"], amount=2)
    env.add(action="bury", target={"term": {"brand": "Acme"}}, amount=0.5)
    out = env.reranker.run(SearchQuery("x"), scored())
    assert [c.id for c in out] == ["i6", "i1", "i4", "i2", "i5", "i3"]  # normalised: 1.0 -0.5, 0.4, 0.8 -0.5 ...
    i6 = out[0]
    assert i6.score == pytest.approx(2.0) and i6.effects[0].action == "boost" and i6.effects[0].delta == 2
    assert out[1].effects[0].delta == -0.5 and out[1].score == pytest.approx(0.5)


def test_freshness_decays_old_items(env: Env) -> None:
    env.add(action="freshness", half_life_days=30, weight=1.0)
    out = env.reranker.run(SearchQuery("x"), scored())
    by_id = {c.id: c for c in out}
    assert by_id["i1"].score == pytest.approx(1.0 * 0.5 ** (1 / 30), rel=1e-6)  # a day old
    assert by_id["i2"].score < 1e-3 and by_id["i3"].score == pytest.approx(0.6)  # a year old; unknown age kept
    assert [c.id for c in out][-2:] == ["i2", "i6"]  # i6 had the lowest score: 0 decays to 0


def test_availability_drops_unavailable_items(env: Env) -> None:
    env.add(action="availability")
    assert "i4" not in env.ids()


def test_diversity_caps_a_brand_in_the_top_k(env: Env) -> None:
    env.add(action="diversity", field="brand", max_per=1, top_k=3)
    out = env.ids()
    assert out[:3] == ["i1", "i4", "i6"] and out[3:] == ["i2", "i3", "i5"]
    env2 = env.reranker.run(SearchQuery("x"), scored())
    assert any(e.action == "diversity" for e in env2[1].effects)


def test_diversity_on_a_list_field_counts_each_value(env: Env) -> None:
    env.add(action="diversity", field="categories", max_per=2, top_k=4)
    assert env.ids()[:4] == ["i1", "i2", "i3", "i5"]


def test_a_diversity_cap_no_candidate_can_meet_keeps_the_list_and_says_so(env: Env) -> None:
    # brands: i1-i3 Acme, i4-i5 Zen, i6 Other: one per brand fills only three of the five places
    env.add(action="diversity", field="brand", max_per=1, top_k=5)
    out = env.reranker.run(SearchQuery("x"), scored())
    assert [c.id for c in out] == ["i1", "i4", "i6", "i2", "i3", "i5"]  # nothing dropped
    notes = [e.detail for c in out for e in c.effects if e.action == "diversity"]
    assert notes and all("met for the first 3: no other candidate fits" in n for n in notes)


def test_mmr_spreads_near_duplicates(env: Env) -> None:
    env.add(action="mmr", top_k=3, **{"lambda": 0.3})
    out = env.ids()
    assert out[0] == "i1" and "i2" not in out[:3] and "i3" not in out[:3]


# ---- scope, windows, order ------------------------------------------------------------------------------


def test_validity_windows(env: Env) -> None:
    env.add(action="pin", items=["i6"], valid_until=NOW - timedelta(seconds=1))  # expired
    env.add(action="hide", items=["i5"], valid_from=NOW + timedelta(days=1))  # not yet
    assert env.ids() == ["i1", "i2", "i3", "i4", "i5", "i6"]
    env.now = NOW + timedelta(days=2)
    assert "i5" not in env.ids()
    assert env.service.all()[0].active_at(env.now) is False


def test_filter_context_applies_when_the_search_filter_includes_it(env: Env) -> None:
    env.add(action="pin", items=["i6"], when={"filter": {"term": {"brand": "Acme"}}})
    assert env.ids()[0] == "i1"
    acme_shoes = {"and": [{"term": {"brand": "Acme"}}, {"term": {"categories": "Shoes"}}]}
    acme = scored((1, 2, 3))  # what retrieval returns under that filter
    assert env.ids(flt=acme_shoes, cands=acme) == ["i1", "i2", "i3"]  # i6 is not Acme: a pin does not break it
    env.add(action="boost", items=["i3"], amount=5, when={"filter": {"term": {"brand": "Acme"}}})
    assert env.ids(flt=acme_shoes, cands=acme)[0] == "i3"


def test_rules_apply_in_the_documented_order(env: Env) -> None:
    # a pin of a hidden-by-availability item is not forced back; pins come after diversity and boosts
    env.add(action="availability")
    env.add(action="boost", items=["i2"], amount=3)
    env.add(action="diversity", field="brand", max_per=1, top_k=3)
    env.add(action="pin", items=["i3"], position=1)
    out = env.reranker.run(SearchQuery("x"), scored())
    ids = [c.id for c in out]
    assert ids[0] == "i3"  # pinned last: first, although diversity had capped Acme
    assert ids[1] == "i2"  # boosted over i1
    assert "i4" not in ids  # unavailable
    assert [e.action for e in out[0].effects] == ["diversity", "pin"]  # each rule that moved it, in order


def test_matching_helpers() -> None:
    shoes = ITEMS["i1"]
    assert matches(parse_filter({"range": {"published_at": {"gte": "2026-01-01"}}}), shoes)
    assert not matches(parse_filter({"not": {"terms": {"brand": ["Acme", "Zen"]}}}), shoes)
    assert matches(parse_filter({"exists": "brand"}), shoes) and not matches(parse_filter({"exists": "price"}), shoes)
    assert filter_includes(And((Term("brand", "Acme"), Term("available", True))), Term("brand", "Acme"))
    assert not filter_includes(None, Term("brand", "Acme"))
    assert query_matches("red shoes", "contains", "Big RED  shoes sale") and not query_matches(
        "red", "contains", "redder"
    )


# ---- validation, conflicts, storage ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"action": "pin"}, "needs items"),
        ({"action": "boost", "items": ["a"]}, "needs an amount"),
        ({"action": "hide", "items": ["a"], "target": {"term": {"brand": "x"}}}, "not both"),
        ({"action": "diversity", "field": "brand"}, "needs a field and max_per"),
        ({"action": "hide", "items": ["a"], "amount": 1}, "hide rules take no amount"),
        ({"action": "pin", "items": ["a"], "valid_from": "2026-02-01", "valid_until": "2026-01-01"}, "after"),
        ({"action": "pin", "items": ["a"], "when": {"query": "  "}}, "blank"),
        ({"action": "shuffle"}, "Input should be"),
    ],
)
def test_invalid_rules_are_refused_with_the_reason(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(PydanticValidationError, match=message):
        RuleIn.model_validate({"name": "r", **rule})


def test_fields_and_filters_are_checked_against_the_catalog(env: Env) -> None:
    with pytest.raises(ValidationError, match="not a keyword field"):
        env.add(action="diversity", field="price", max_per=1)
    with pytest.raises(ValidationError, match="unknown field 'colour'"):
        env.add(action="hide", target={"term": {"colour": "red"}})


PIN1 = {"action": "pin", "items": ["i1"]}
PIN2 = {"action": "pin", "items": ["i2"]}
SHOES_ANY = {"query": "shoes", "match": "contains"}
BOOST1 = {"action": "boost", "items": ["i1"], "amount": 1}
BRAND_CAP = {"action": "diversity", "field": "brand", "max_per": 1}


@pytest.mark.parametrize(
    ("first", "second", "reason"),
    [
        (PIN1, {"action": "pin", "items": ["i2"], "position": 1}, "positions"),
        (PIN1, {"action": "hide", "items": ["i1"]}, "hides"),
        (BOOST1, {**BOOST1, "action": "bury"}, "buries"),
        (BOOST1, {**BOOST1, "amount": 2}, "add up"),
        (BRAND_CAP, {**BRAND_CAP, "max_per": 2}, "two diversity"),
        ({**PIN1, "when": {"query": "red shoes"}}, {**PIN2, "when": SHOES_ANY}, "positions"),
    ],
)  # fmt: skip
def test_conflicting_rules_are_reported_not_merged(
    env: Env, first: dict[str, Any], second: dict[str, Any], reason: str
) -> None:
    rid = env.add(name="first", **first)
    with pytest.raises(RuleConflictError, match=reason) as err:
        env.add(name="second", **second)
    assert [c.rule_id for c in err.value.conflicts] == [rid] and len(env.service.all()) == 1


@pytest.mark.parametrize(
    "second",
    [
        {"action": "pin", "items": ["i2"], "when": {"query": "blue shoes"}},  # another exact query
        {"action": "pin", "items": ["i2"], "valid_from": "2027-01-01T00:00:00Z"},  # another time
        {"action": "pin", "items": ["i2"], "position": 2},  # another position
        {"action": "pin", "items": ["i2"], "when": {"filter": {"term": {"brand": "Zen"}}}},  # another brand page
        {"action": "pin", "items": ["i2"], "enabled": False},
    ],
)
def test_rules_that_cannot_meet_do_not_conflict(env: Env, second: dict[str, Any]) -> None:
    env.add(action="pin", items=["i1"], when={"query": "red shoes", "filter": {"term": {"brand": "Acme"}}},
            valid_until="2026-12-31T00:00:00Z")  # fmt: skip
    env.add(**second)


def test_replace_checks_conflicts_against_the_others_only(env: Env) -> None:
    a = env.add(action="pin", items=["i1"], position=1)
    env.add(action="pin", items=["i2"], position=2)
    env.service.replace(a, RuleIn(name="moved", action="pin", items=["i1"], position=1, enabled=True))
    with pytest.raises(RuleConflictError):
        env.service.replace(a, RuleIn(name="clash", action="pin", items=["i3"], position=2))
    assert env.service.get(a).name == "moved"


def test_the_store_is_durable_and_counts_revisions(tmp_path: Path) -> None:
    path = tmp_path / "rules.sqlite"
    store = RuleStore(path)
    r0 = store.revision()
    rule = store.create(RuleIn(name="r", action="mmr", **{"lambda": 0.5}))
    assert store.revision() == r0 + 1
    store.close()
    again = RuleStore(path)
    (loaded,) = again.all()
    assert loaded.id == rule.id and loaded.lambda_ == 0.5 and loaded.top_k == 10
    again.delete(rule.id)
    with pytest.raises(NotFoundError):
        again.get(rule.id)
    with pytest.raises(NotFoundError):
        again.delete(rule.id)
    again.close()


def test_a_write_by_another_process_is_seen_at_the_next_search(tmp_path: Path) -> None:
    path = tmp_path / "rules.sqlite"
    reader = RulesReranker(RuleStore(path), CatalogSchema(), clock=lambda: NOW)
    assert reader.run(SearchQuery("x"), scored())[0].id == "i1"
    RuleStore(path).create(RuleIn(name="r", action="hide", items=["i1"]))  # another connection, as another process
    assert reader.run(SearchQuery("x"), scored())[0].id == "i2"
    assert reader.name.startswith("rules(1 active of 1")
