"""A small real catalog for end-to-end tests: the most reviewed films of the catalog in `bokeh-sampledata`
(loaded from the installed package by services.datasets.films, never copied into the repository)."""

from __future__ import annotations

from services.core.domain import Item
from services.datasets.films import load_films

__all__ = ["embedding_text", "load_films"]


def embedding_text(item: Item) -> str:
    """What an item's vector is made from here: title, genres, languages, director. Shorter than the indexer's
    default (which adds the body) so that 300 items embed in seconds on two cores."""
    parts = [item.title, ", ".join(item.categories), ", ".join(item.tags), item.brand or ""]
    return ". ".join(p for p in parts if p)
