"""MovieLens 100k ratings joined onto the film catalog by title and year.

MovieLens writes titles its own way ("Shawshank Redemption, The (1994)", "Seven (Se7en)", "Postino, Il"); the
catalog of `bokeh-sampledata` writes "The Shawshank Redemption", "Seven", "Il Postino: The Postman", with the
year apart. Both sides are reduced to keys (case, accents, punctuation and articles removed, a trailing article
read as a leading one, alternate titles in parentheses as further names) and matched within one year: the two
sources disagree by a year for films released around New Year or shown at festivals first.

A film matches on its whole title first; only when no whole title matches do the parts of a title count (the
text either side of a colon or a dash: "Star Wars" and "Return of the Jedi" in "Star Wars: Episode VI – Return
of the Jedi"). Ties go to the year nearest, then to the catalog's order (the most reviewed film first).

The ratings become `rating` interactions on the catalog's item ids, users named "ml-<id>", with their
timestamps. MovieLens itself is read from the installed `recbole` package and never copied (services.recs.movielens).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from services.core.domain import Item
from services.recs.interactions import Interaction
from services.recs.movielens import load_interactions, load_items

USER_PREFIX = "ml-"
YEAR_TOLERANCE = 1

# Articles dropped from the front of a key, and moved there from the end ("Postino, Il"): English and the
# languages MovieLens 100k's foreign titles use. "de" and "i" are left out: too often a real first word.
_ARTICLES = frozenset({"the", "a", "an", "il", "la", "le", "les", "l", "lo", "el", "los", "las", "der", "die", "das"})
_TRAILING_ARTICLE = re.compile(
    r"^(?P<head>.+?),\s*(?P<article>the|a|an|il|la|le|les|l'|lo|el|los|las|der|die|das|det)$", re.I
)
_PARENTHESES = re.compile(r"\(([^()]*)\)")
_YEAR_SUFFIX = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})\)\s*$")
# "Dr. Strangelove or: How I Learned to Stop Worrying..." has its parts either side of "or:".
_PART_SEPARATORS = re.compile(r"(?:,?\s+or)?\s*[:–—]\s*|\s+-\s+", re.I)
# "Jackie Chan's First Strike", "William Shakespeare's Romeo and Juliet": the film is also known without the name.
# The owner has two names at least and is no article: "Jupiter's Wife" and "The Preacher's Wife" are not "Wife".
_POSSESSIVE = re.compile(r"^(?!(?:The|A|An)\s)(?:[A-Z][\w.]*\s+){1,3}[A-Z][\w.]*'s\s+(?P<rest>.+)$")
_FRACTIONS = {"½": "1/2", "⅓": "1/3", "⅔": "2/3", "¼": "1/4", "¾": "3/4"}  # "8½" is "8 1/2"
_ELIDED = re.compile(r"\b([ld])['’]")
_NOT_WORD = re.compile(r"[^0-9a-z]+")
_LETTER_DIGIT = re.compile(r"(?<=[a-z])(?=[0-9])|(?<=[0-9])(?=[a-z])")  # "Jungle2Jungle" = "Jungle 2 Jungle"
_NUMBER_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
)  # fmt: skip
# Words written two ways by the two sources ("Three Colors: Red" / "Three Colours: Red", "Twelve Monkeys" /
# "12 Monkeys"), each reduced to one spelling.
_SPELLINGS = {
    "colour": "color",
    "colours": "colors",
    "honour": "honor",
    "favourite": "favorite",
    "theatre": "theater",
    "centre": "center",
    "armour": "armor",
    "grey": "gray",
    "blvd": "boulevard",
    "vs": "versus",
    **{word: str(n) for n, word in enumerate(_NUMBER_WORDS)},
}
MIN_PART_CHARS = 4  # shorter parts ("ii", "3d") say too little to match a film on
_GENERIC_PARTS = frozenset({"movie", "film", "part 2", "part 3", "sequel"})


def parse_movielens_title(text: str) -> tuple[str, int | None]:
    """'Toy Story (1995)' -> ('Toy Story', 1995); a title without a year keeps None."""
    m = _YEAR_SUFFIX.match(text)
    return (m.group("title"), int(m.group("year"))) if m else (text.strip(), None)


def _front_article(name: str) -> str:
    """'Shawshank Redemption, The' -> 'The Shawshank Redemption'."""
    m = _TRAILING_ARTICLE.match(name.strip())
    if not m:
        return name.strip()
    article = m.group("article")
    return f"{article}{m.group('head')}" if article.endswith("'") else f"{article} {m.group('head')}"


def normalise(name: str) -> str:
    """A comparable key: no accents, lower case, '&' as 'and', apostrophes dropped, other punctuation a space,
    no leading article."""
    text = _front_article(name)
    for fraction, written in _FRACTIONS.items():
        text = text.replace(fraction, f" {written}")
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    # dots and stars join what they separate: "M*A*S*H" is "MASH", "L.A." is "LA"
    text = _ELIDED.sub(r"\1 ", text.replace("&", " and ").replace("+", " and "))  # "l'uomo" is "l uomo"
    for joiner in ("'", "’", ".", "*"):
        text = text.replace(joiner, "")
    words = [_SPELLINGS.get(w, w) for w in _NOT_WORD.sub(" ", _LETTER_DIGIT.sub(" ", text)).split()]
    if len(words) > 1 and words[0] in _ARTICLES:
        words = words[1:]
    return " ".join(words)


def names(title: str) -> list[str]:
    """The names a title gives a film: the title without its parentheses, then each alternate title in them
    ('Seven (Se7en)' -> 'Seven', 'Se7en')."""
    alternates = [a.strip() for a in _PARENTHESES.findall(title) if a.strip()]
    main = _PARENTHESES.sub(" ", title).strip()
    return [n for n in (main, *alternates) if n]


def whole_keys(title: str) -> set[str]:
    return {k for k in (normalise(n) for n in names(title)) if k}


def part_keys(title: str) -> set[str]:
    """The keys of the parts of each name (split at colons and dashes), and of the name without an owner's name
    in front of it; generic parts ("The Movie") and very short ones say too little to match a film on."""
    keys: set[str] = set()
    for name in names(title):
        parts = _PART_SEPARATORS.split(name)
        possessive = _POSSESSIVE.match(name)
        if possessive:
            parts.append(possessive.group("rest"))
        if len(parts) > 1:
            keys |= {k for k in map(normalise, parts) if len(k) >= MIN_PART_CHARS and k not in _GENERIC_PARTS}
    return keys


_Entry = tuple[int, int, str]  # (catalog order, year, item id)


class TitleMatcher:
    """Finds the catalog item for a (title, year). Catalog items need a `year` attribute to be matched.

    Three tiers, the first that finds a film within the year tolerance wins: whole title = whole title; a whole
    title = a part of the other ("Star Wars" / "Star Wars: Episode IV – A New Hope"); a part = a part, when the
    part has at least two words ("Star Trek: The Wrath of Khan" / "Star Trek II: The Wrath of Khan")."""

    def __init__(self, catalog: Iterable[Item], *, year_tolerance: int = YEAR_TOLERANCE) -> None:
        self._tolerance = year_tolerance
        self._whole: dict[str, list[_Entry]] = {}
        self._parts: dict[str, list[_Entry]] = {}
        for order, item in enumerate(catalog):
            year = item.attributes.get("year")
            if not isinstance(year, int) or isinstance(year, bool):
                continue
            entry = (order, year, item.id)
            for key in whole_keys(item.title):
                self._whole.setdefault(key, []).append(entry)
            for key in part_keys(item.title):
                self._parts.setdefault(key, []).append(entry)

    def _best(self, index: dict[str, list[_Entry]], keys: Iterable[str], year: int) -> str | None:
        found = [
            (abs(y - year), order, item_id)
            for key in keys
            for order, y, item_id in index.get(key, ())
            if abs(y - year) <= self._tolerance
        ]
        return min(found)[2] if found else None

    def match(self, title: str, year: int | None) -> str | None:
        """The catalog id of the film, or None. A title without a year is not matched: too many films share one."""
        if year is None:
            return None
        whole, parts = whole_keys(title), part_keys(title)
        return (
            self._best(self._whole, whole, year)
            or self._best(self._parts, whole, year)
            or self._best(self._whole, parts, year)
            or self._best(self._parts, (k for k in parts if " " in k), year)
        )


@dataclass(frozen=True)
class JoinReport:
    films: int  # MovieLens films
    films_matched: int
    ratings: int  # MovieLens ratings
    ratings_joined: int
    users: int  # users with at least one joined rating
    catalog_items: int  # catalog films that received ratings

    @property
    def film_match_rate(self) -> float:
        return self.films_matched / self.films if self.films else 0.0

    @property
    def rating_match_rate(self) -> float:
        return self.ratings_joined / self.ratings if self.ratings else 0.0

    def summary(self) -> str:
        return (
            f"{self.films_matched:,} of {self.films:,} MovieLens films matched ({self.film_match_rate:.0%}), "
            f"{self.ratings_joined:,} of {self.ratings:,} ratings ({self.rating_match_rate:.0%}) "
            f"by {self.users:,} users on {self.catalog_items:,} catalog films"
        )


@dataclass(frozen=True)
class MovieLensJoin:
    matches: dict[str, str]  # MovieLens item id -> catalog item id
    interactions: list[Interaction]  # in MovieLens file order
    report: JoinReport

    def restricted_to(self, item_ids: Iterable[str]) -> list[Interaction]:
        """The joined interactions on these catalog items only (a slice of the catalog)."""
        keep = set(item_ids)
        return [i for i in self.interactions if i.item_id in keep]


def join_movielens(catalog: Sequence[Item], folder: Path | None = None) -> MovieLensJoin:
    """MovieLens 100k's ratings on the catalog's films, as interactions; MovieLens films that match nothing in
    the catalog are left out with their ratings."""
    matcher = TitleMatcher(catalog)
    films = load_items(folder)
    matches: dict[str, str] = {}
    for film in films:
        title, year = parse_movielens_title(film.title)
        found = matcher.match(title, year)
        if found is not None:
            matches[film.id] = found
    ratings = load_interactions(folder)
    joined = [
        Interaction(
            user_id=f"{USER_PREFIX}{r.user_id}",
            item_id=matches[r.item_id],
            type=r.type,
            timestamp=r.timestamp,
            value=r.value,
        )
        for r in ratings
        if r.item_id in matches
    ]
    report = JoinReport(
        films=len(films),
        films_matched=len(matches),
        ratings=len(ratings),
        ratings_joined=len(joined),
        users=len({i.user_id for i in joined}),
        catalog_items=len({i.item_id for i in joined}),
    )
    return MovieLensJoin(matches=matches, interactions=joined, report=report)
