"""The film evaluation's derived judgments: what a user types for a title, the typo, which people are asked,
and the split into a training and a held-out half that never share a film or a person."""

from __future__ import annotations

import pytest

from services.ranking.evaluate import Run
from services.ranking.evaluate_films import film_queries, half_of, measure_by_kind, misspelt, typed

pytestmark = pytest.mark.unit


def test_typed_is_what_a_user_types() -> None:
    assert typed("Ocean's Eleven") == "oceans eleven"
    assert typed("Spider-Man 2") == "spider man 2"
    assert typed("  Amélie   ") == "amélie"
    assert typed("Star Wars: Episode IV – A New Hope") == "star wars episode iv a new hope"


def test_misspelt_swaps_two_letters_inside_the_longest_word() -> None:
    assert misspelt("avatar") == "avtaar"
    assert misspelt("the godfather") == "the godafther"
    assert misspelt("up") is None  # no word of five letters
    assert misspelt("jaws") is None
    assert misspelt("aaaaa") is None  # a swap that changes nothing is no typo


TITLES = {f"f{i}": f"Film Number {i}" for i in range(40)} | {"r1": "The Remake", "r2": "The Remake!"}
DIRECTORS = {f"f{i}": ["Ann Lee"] if i < 4 else ["Bo Diaz"] if i < 6 else [f"Solo {i}"] for i in range(40)}
CASTS = {f"f{i}": ["Cy Young"] * (i < 7) + ["Di Ro", "Di Ro"] * (i < 8) for i in range(40)}


def test_queries_and_their_answers_come_from_the_fields() -> None:
    q = film_queries(TITLES, DIRECTORS, CASTS, titles_asked=100, people_asked=10, actor_films=(6, 30))
    kinds = {k: q.kind[k] for k in q.text}
    titles = [k for k, v in kinds.items() if v == "title"]
    assert len(titles) == 40  # both remakes are left out: "the remake" would have two right answers
    assert all(q.qrels[k] == {k.split(":", 1)[1]: 4} for k in titles)
    assert q.text["title:f7"] == "film number 7" and q.text["typo:f7"] == "film nubmer 7"
    directors = {q.text[k]: q.qrels[k] for k, v in kinds.items() if v == "director"}
    assert directors == {"ann lee": {"f0": 3, "f1": 3, "f2": 3, "f3": 3}}  # Bo Diaz has 2 films, Solo 1 each
    actors = {q.text[k]: set(q.qrels[k]) for k, v in kinds.items() if v == "actor"}
    assert actors == {"cy young": {f"f{i}" for i in range(7)}, "di ro": {f"f{i}" for i in range(8)}}


def test_the_halves_share_no_film_and_no_person_and_cover_both() -> None:
    train = film_queries(TITLES, DIRECTORS, CASTS, titles_asked=100, people_asked=10, half="train")
    test = film_queries(TITLES, DIRECTORS, CASTS, titles_asked=100, people_asked=10, half="test")
    assert train.text and test.text and not set(train.text) & set(test.text)
    for q in (train, test):
        answers = {item for k in q.text if q.kind[k].startswith("title") for item in q.qrels[k]}
        assert {half_of(i) for i in answers} <= {"train" if q is train else "test"}
    every = film_queries(TITLES, DIRECTORS, CASTS, titles_asked=100, people_asked=10)
    assert set(every.text) == set(train.text) | set(test.text)
    with pytest.raises(ValueError, match="half"):
        film_queries(TITLES, DIRECTORS, CASTS, half="validation")


def test_a_query_answered_with_nothing_counts_as_a_miss() -> None:
    q = film_queries({"a": "Alpha Film", "b": "Beta Film"}, {}, {}, titles_asked=2)
    found: Run = {"title:a": {"a": 0.0, "b": -1.0}, "title:b": {"a": 0.0, "b": -1.0}}
    both = measure_by_kind("x", found, q).by_kind["title"]
    assert both["p@1"] == 0.5 and both["mrr@10"] == 0.75
    half = measure_by_kind("x", {"title:a": {"a": 0.0}}, q).by_kind["title"]  # title:b got no answer
    assert half["p@1"] == 0.5 and half["mrr@10"] == 0.5 and half["queries"] == 2
