"""The MovieLens-to-catalog title join: the matcher on real titles of both sources, and the whole join over the
installed packages (skipped where `recbole` or `bokeh-sampledata` is missing)."""

from __future__ import annotations

import importlib.util
from collections import Counter

import pytest

from services.core.domain import Item
from services.datasets.movielens_join import (
    MovieLensJoin,
    TitleMatcher,
    join_movielens,
    normalise,
    parse_movielens_title,
)
from services.recs.interactions import InteractionType

pytestmark = pytest.mark.unit


def film(item_id: str, title: str, year: int) -> Item:
    return Item(id=item_id, title=title, attributes={"year": year})


# Titles as the film catalog writes them (bokeh-sampledata), each with its year there.
CATALOG = [
    film("shawshank", "The Shawshank Redemption", 1994),
    film("suspects", "The Usual Suspects", 1995),
    film("postino", "Il Postino: The Postman", 1994),
    film("seven", "Seven", 1995),
    film("seven-samurai", "Seven Samurai", 1954),
    film("monkeys", "12 Monkeys", 1995),
    film("star-wars", "Star Wars: Episode IV – A New Hope", 1977),
    film("jedi", "Star Wars: Episode VI – Return of the Jedi", 1983),
    film("khan", "Star Trek II: The Wrath of Khan", 1982),
    film("strangelove", "Dr. Strangelove", 1964),
    film("mash", "MASH", 1970),
    film("nikita", "La Femme Nikita", 1990),
    film("red", "Three Colours: Red", 1994),
    film("romeo", "Romeo + Juliet", 1996),
    film("first-strike", "First Strike", 1996),
    film("jungle", "Jungle 2 Jungle", 1997),
    film("love-bug", "The Love Bug", 1968),
    film("preachers-wife", "The Preacher's Wife", 1996),
    film("toy-story", "Toy Story", 1995),
    film("toy-story-2", "Toy Story 2", 1999),
    film("gilligan", "Rudolph the Red-Nosed Reindeer: The Movie", 1998),
]


@pytest.fixture(scope="module")
def matcher() -> TitleMatcher:
    return TitleMatcher(CATALOG)


@pytest.mark.parametrize(
    ("movielens", "expected"),
    [
        ("Toy Story (1995)", "toy-story"),
        ("Shawshank Redemption, The (1994)", "shawshank"),  # trailing article
        ("Usual Suspects, The (1995)", "suspects"),
        ("Postino, Il (1994)", "postino"),  # a foreign trailing article, and the catalog's subtitle
        ("Seven (Se7en) (1995)", "seven"),  # an alternate title in parentheses
        ("Twelve Monkeys (1995)", "monkeys"),  # a number written out
        ("Star Wars (1977)", "star-wars"),  # the catalog's title has an episode subtitle
        ("Return of the Jedi (1983)", "jedi"),  # ... and the MovieLens title is the subtitle
        ("Star Trek: The Wrath of Khan (1982)", "khan"),  # both have subtitles, the same one
        ("Dr. Strangelove or: How I Learned to Stop Worrying and Love the Bomb (1963)", "strangelove"),  # year ±1
        ("M*A*S*H (1970)", "mash"),
        ("Nikita (La Femme Nikita) (1990)", "nikita"),
        ("Three Colors: Red (1994)", "red"),  # British spelling in the catalog
        ("William Shakespeare's Romeo and Juliet (1996)", "romeo"),  # an owner's name in front; "+" is "and"
        ("Jackie Chan's First Strike (1996)", "first-strike"),
        ("Jungle2Jungle (1997)", "jungle"),
        ("Love Bug, The (1969)", "love-bug"),  # the sources disagree by a year
    ],
)
def test_real_movielens_titles_find_their_catalog_film(matcher: TitleMatcher, movielens: str, expected: str) -> None:
    title, year = parse_movielens_title(movielens)
    assert matcher.match(title, year) == expected


@pytest.mark.parametrize(
    "movielens",
    [
        "Toy Story (1997)",  # two years off: another film
        "Seven Years in Tibet (1997)",  # shares a first word only
        "Wife, The (1995)",  # not "The Preacher's Wife": a one-word owner or an article is no film's author
        "Gilligan's Island: The Movie (1998)",  # "The Movie" is no title of its own
        "Magnificent Seven, The (1954)",  # Seven Samurai under another name: not matched by title
    ],
)
def test_titles_that_are_not_the_same_film_do_not_match(matcher: TitleMatcher, movielens: str) -> None:
    title, year = parse_movielens_title(movielens)
    assert matcher.match(title, year) is None


def test_a_title_without_a_year_is_not_matched(matcher: TitleMatcher) -> None:
    assert parse_movielens_title("unknown") == ("unknown", None)
    assert matcher.match("Toy Story", None) is None


def test_the_nearest_year_wins_then_the_catalog_order() -> None:
    remakes = TitleMatcher(
        [film("a", "Psycho", 1998), film("b", "Psycho", 1960), film("c", "Psycho", 1999), film("d", "Psycho", 1998)]
    )
    assert remakes.match("Psycho", 1960) == "b"
    assert remakes.match("Psycho", 1999) == "c"  # exact year before the year-off one listed first
    assert remakes.match("Psycho", 1998) == "a"  # a tie in year goes to the film listed first (most reviewed)


def test_normalise_removes_case_accents_punctuation_and_articles() -> None:
    assert normalise("Léon: The Professional") == normalise("LEON - the professional") == "leon the professional"
    assert normalise("Star Maker, The") == normalise("The Star Maker") == "star maker"
    assert normalise("L'Avventura") == "avventura"
    assert normalise("8½") == normalise("8 1/2")
    assert normalise("The") == "the"  # a title that is only an article keeps it


needs_data = pytest.mark.skipif(
    importlib.util.find_spec("recbole") is None or importlib.util.find_spec("bokeh_sampledata") is None,
    reason="MovieLens 100k comes from the recbole package, the catalog from bokeh-sampledata",
)


@pytest.fixture(scope="module")
def joined() -> tuple[list[Item], MovieLensJoin]:
    from services.datasets.films import load_films

    catalog = load_films()
    return catalog, join_movielens(catalog)


@needs_data
def test_the_whole_join_matches_most_films_and_nearly_all_ratings(joined: tuple[list[Item], MovieLensJoin]) -> None:
    catalog, join = joined
    report = join.report
    assert report.films == 1682 and report.ratings == 100_000
    assert report.film_match_rate > 0.8  # 84% measured: the rest are mostly not in the catalog at all
    assert report.rating_match_rate > 0.95  # the films that are missing are the rarely rated ones
    assert report.users == 943  # every user keeps some history
    assert len(join.interactions) == report.ratings_joined
    ids = {f.id for f in catalog}
    titles = {f.id: f.title for f in catalog}
    assert set(join.matches.values()) <= ids
    assert titles[join.matches["50"]] == "Star Wars: Episode IV – A New Hope"  # MovieLens id 50 = Star Wars (1977)
    assert titles[join.matches["64"]] == "The Shawshank Redemption"


@needs_data
def test_ratings_become_rating_interactions_on_catalog_ids(joined: tuple[list[Item], MovieLensJoin]) -> None:
    from services.recs.movielens import load_interactions

    _, join = joined
    first = load_interactions()[0]  # user 196 rated MovieLens film 242 with 3 at 881250949
    mapped = join.interactions[0]
    assert mapped.user_id == f"ml-{first.user_id}" and mapped.item_id == join.matches[first.item_id]
    assert mapped.type is InteractionType.RATING
    assert mapped.value == first.value and mapped.timestamp == first.timestamp
    assert {i.value for i in join.interactions} == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert all(i.user_id.startswith("ml-") for i in join.interactions)
    by_user = Counter(i.user_id for i in join.interactions)
    assert min(by_user.values()) >= 10


@needs_data
def test_restricting_to_a_slice_keeps_only_its_items(joined: tuple[list[Item], MovieLensJoin]) -> None:
    _, join = joined
    some = sorted(set(join.matches.values()))[:5]
    kept = join.restricted_to(some)
    assert kept and {i.item_id for i in kept} <= set(some)
    assert len(kept) == sum(i.item_id in some for i in join.interactions)
