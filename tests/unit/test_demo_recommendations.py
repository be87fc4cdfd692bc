"""The demo's recommendation steps without a worker or a server: the slice of films it ingests, the example user
it picks, and loading the joined ratings into the interaction store without ever recording one twice."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.api.settings import ApiSettings
from services.core.domain import Item
from services.datasets.movielens_join import JoinReport, MovieLensJoin
from services.demo import Demo, DemoOptions, choose_films, pick_user
from services.recs import Interaction, InteractionType, SQLiteInteractionStore

pytestmark = pytest.mark.unit


def rating(user: str, item: str, value: float, ts: int) -> Interaction:
    return Interaction(user, item, InteractionType.RATING, datetime.fromtimestamp(ts, UTC), value)


def joined(matches: dict[str, str], ratings: list[Interaction]) -> MovieLensJoin:
    report = JoinReport(len(matches), len(matches), len(ratings), len(ratings), 0, 0)
    return MovieLensJoin(matches=matches, interactions=ratings, report=report)


CATALOG = [Item(id=f"film-{n}", title=f"Film {n}") for n in range(6)]  # in catalog order: most reviewed first


def test_a_slice_takes_the_films_movielens_rated_first_in_catalog_order() -> None:
    join = joined({"10": "film-4", "11": "film-2"}, [])
    assert [f.id for f in choose_films(CATALOG, join, 3)] == ["film-2", "film-4", "film-0"]
    assert [f.id for f in choose_films(CATALOG, join, 1)] == ["film-2"]
    assert choose_films(CATALOG, join, None) == CATALOG  # no limit: the whole catalog
    assert [f.id for f in choose_films(CATALOG, None, 2)] == ["film-0", "film-1"]  # no MovieLens: the top films


def test_the_example_user_has_a_history_nearest_twenty_ratings_long() -> None:
    ratings = [rating("ml-7", f"film-{n}", 4, n) for n in range(40)]
    ratings += [rating("ml-3", f"film-{n}", 4, n) for n in range(18)]
    ratings += [rating("ml-12", f"film-{n}", 4, n) for n in range(22)]
    ratings += [rating("ml-2", "film-1", 5, 1)]
    assert pick_user(ratings) == "ml-3"  # 18 and 22 are both 2 away: the lower MovieLens id
    assert pick_user([]) is None


@pytest.fixture
def demo(tmp_path: Path) -> Demo:
    d = Demo(DemoOptions(serve=False))
    d.settings = ApiSettings(engine="embedded", data_dir=tmp_path / "var")
    return d


def test_joined_ratings_are_recorded_once_however_often_they_are_loaded(demo: Demo) -> None:
    ratings = [rating("ml-1", "film-0", 4, 100), rating("ml-1", "film-1", 2, 200), rating("ml-2", "film-0", 5, 100)]
    store_path = demo.settings.recs.interactions_path(demo.settings.data_dir)  # what the API reads
    other = SQLiteInteractionStore(store_path)
    other.record([Interaction("web-1", "film-0", InteractionType.CLICK, datetime.fromtimestamp(50, UTC))])
    other.close()

    assert demo.load_interactions(ratings) == 3
    assert demo.load_interactions(ratings) == 0  # a second run, or a lost marker: nothing twice
    bigger = [*ratings, rating("ml-2", "film-3", 3, 300)]
    assert demo.load_interactions(bigger) == 1  # a larger slice adds only its new ratings

    store = SQLiteInteractionStore(store_path)
    try:
        assert store.count() == 5  # the click and four ratings
        assert store.interacted_items("ml-2") == {"film-0", "film-3"}
        history = store.history("ml-1", limit=10)
        assert [(i.item_id, i.value, i.epoch) for i in history] == [("film-0", 4.0, 100.0), ("film-1", 2.0, 200.0)]
    finally:
        store.close()


def test_the_same_rating_given_twice_is_kept_twice(demo: Demo) -> None:
    """Two MovieLens entries of one film (the data set has a few duplicates) join onto one catalog item: both
    ratings are real and both are kept, once each."""
    twice = [rating("ml-1", "film-0", 4, 100), rating("ml-1", "film-0", 4, 100)]
    assert demo.load_interactions(twice) == 2
    assert demo.load_interactions(twice) == 0
