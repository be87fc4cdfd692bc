"""A small real catalog for end-to-end tests: films from the `bokeh-sampledata` package's movies.db (CC0,
from Wikidata), loaded from the installed package, never copied into the repository."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from services.core.domain import Item

_QUERY = """
SELECT o.imdbID, o.Title, o.Year, o.Genre, o.Director, o.Writer, o.Cast, o.Country, o.Language, o.Released,
       t.Reviews, t.Meter
FROM omdb o JOIN tomatoes t ON t.ID = o.ID
WHERE o.imdbID IS NOT NULL AND o.Title != ''
ORDER BY t.Reviews DESC NULLS LAST, o.ID
LIMIT ?
"""


def _split(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def _date(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC) if text else None
    except ValueError:
        return None


def load_films(limit: int = 300) -> list[Item]:
    """The `limit` most reviewed films: title, a body made of credits, genres as categories, the (first)
    director as brand, languages as tags, review count as popularity, Tomatometer / 10 as rating."""
    from bokeh_sampledata.movies_data import movie_path

    with sqlite3.connect(f"file:{movie_path}?mode=ro", uri=True) as conn:
        rows = conn.execute(_QUERY, (limit,)).fetchall()
    items = []
    for imdb, title, year, genre, director, writer, cast, country, language, released, reviews, meter in rows:
        directors = _split(director)
        body = ". ".join(
            part
            for part in (
                f"A {year} film" if year else "",
                f"Directed by {', '.join(directors)}" if directors else "",
                f"Written by {writer}" if writer else "",
                f"Starring {', '.join(_split(cast)[:8])}" if cast else "",
                f"Made in {country}" if country else "",
            )
            if part
        )
        items.append(
            Item.parse(
                {
                    "id": f"film-{imdb}",
                    "title": title,
                    "body": body,
                    "categories": _split(genre),
                    "brand": directors[0] if directors else None,
                    "tags": _split(language)[:5],
                    "popularity": float(reviews or 0),
                    "rating": meter / 10 if meter is not None else None,
                    "published_at": _date(released),
                    "attributes": {"year": int(year)} if year else {},
                }
            )
        )
    return items


def embedding_text(item: Item) -> str:
    """What an item's vector is made from here: title, genres, languages, director. Shorter than the indexer's
    default (which adds the body) so that 300 items embed in seconds on two cores."""
    parts = [item.title, ", ".join(item.categories), ", ".join(item.tags), item.brand or ""]
    return ". ".join(p for p in parts if p)
