"""The film catalog of the `bokeh-sampledata` package (CC0, 17,472 films from OMDb/Rotten Tomatoes data):
read from the installed package's SQLite file, never copied into the repository."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.core.domain import Item

_QUERY = """
SELECT o.imdbID, o.Title, o.Year, o.Genre, o.Director, o.Writer, o.Cast, o.Country, o.Language, o.Released,
       t.Reviews, t.Meter, t.Consensus, o.imdbRating, o.imdbVotes
FROM omdb o JOIN tomatoes t ON t.ID = o.ID
WHERE o.imdbID IS NOT NULL AND o.Title != ''
ORDER BY t.Reviews DESC NULLS LAST, o.ID
LIMIT ?
"""


def _split(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip() and p.strip() != "N/A"]


def _date(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC) if text else None
    except ValueError:
        return None


def movie_db_path() -> str:
    from bokeh_sampledata.movies_data import movie_path

    return str(movie_path)


MAX_CAST = 100


def _rows(limit: int) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{movie_db_path()}?mode=ro", uri=True) as conn:
        return conn.execute(_QUERY, (limit,)).fetchall()


@dataclass(frozen=True, slots=True)
class Credits:
    directors: tuple[str, ...]
    cast: tuple[str, ...]


def film_credits(limit: int = 20_000) -> dict[str, Credits]:
    """Directors and cast of the films `load_films(limit)` returns, by item id (an evaluation derives its
    judgments from them: a person's name as the query, the films they made as its answers)."""
    return {f"film-{row[0]}": Credits(tuple(_split(row[4])), tuple(_split(row[6])[:MAX_CAST])) for row in _rows(limit)}


def load_films(limit: int = 20_000) -> list[Item]:
    """The `limit` most reviewed films: title; a body of credits, the critics' consensus and the cast; genres as
    categories; the (first) director as brand; languages as tags; review count as popularity; Tomatometer / 10
    (or the IMDb rating) as rating; the release date; the year as an attribute."""
    rows = _rows(limit)
    items: dict[str, Item] = {}
    for (
        imdb,
        title,
        year,
        genre,
        director,
        writer,
        cast,
        country,
        language,
        released,
        reviews,
        meter,
        consensus,
        imdb_rating,
        imdb_votes,
    ) in rows:
        directors = _split(director)
        # The catalog lists a film's cast alphabetically, so its first names are seldom the leads: the whole
        # cast goes last, where keyword search still finds every name ("keanu reeves" → The Matrix) and the
        # embedded text, cut at embed_max_chars, keeps the consensus and credits instead of bit parts.
        parts = (
            f"A {year} film" if year else "",
            f"Directed by {', '.join(directors)}" if directors else "",
            consensus if consensus and consensus != "N/A" else "",
            f"Written by {writer}" if writer and writer != "N/A" else "",
            f"Made in {country}" if country and country != "N/A" else "",
            f"Cast: {', '.join(_split(cast)[:MAX_CAST])}" if cast else "",
        )
        rating = (
            meter / 10 if isinstance(meter, int | float) else imdb_rating if isinstance(imdb_rating, float) else None
        )
        popularity = float(reviews) if isinstance(reviews, int | float) and reviews else float(imdb_votes or 0) / 1000
        item_id = f"film-{imdb}"
        items[item_id] = Item.parse(
            {
                "id": item_id,
                "title": title[:300],
                "body": ". ".join(p for p in parts if p)[:60_000],
                "categories": _split(genre)[:20],
                "brand": directors[0][:200] if directors else None,
                "tags": _split(language)[:5],
                "popularity": popularity,
                "rating": rating,
                "published_at": _date(released),
                "attributes": {"year": int(year)} if isinstance(year, int) else {},
            }
        )
    return list(items.values())
