"""Search-as-you-type: top items and query completions for a partial query.

Three legs run side by side, with the filter `available = true` (and the caller's) inside each:
  prefix  the engine's prefix query on the text as typed (typo tolerant on completed words, prefix on
          the last)
  fuzzy   the same with the last word taken as complete, so a typo in it is forgiven ("godfater" → Godfather);
          by default only after the prefix leg found fewer hits than the answer holds (a second text query on
          every keystroke cost more than the prefix query itself)
  vector  k-NN on the query vector, skipped for 1–2 characters, weak hits dropped. The model never runs on
          a keystroke's path: the leg runs when the cache already holds the vector of the text, or of an
          earlier keystroke of the word being typed; on a miss the text is embedded in the background
          (latest wins), so the next keystroke or the completed word finds it, and searched right there,
          so it finds the hits too: the keystrokes that stand one held vector in for their own share its
          search (held by the engine's state token, as answers are). A held vector whose search found
          nothing above the floor is not searched again with the same filter for a while.
Their lists are fused (weighted RRF), a popularity prior is added, duplicates removed. Completions are cut
from the titles of the hits that match the typed words in order. A keystroke asked again finds its answer
held, while the engine's state token says nothing changed (`AnswerCache`).
"""

from __future__ import annotations

import math
import re
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass, replace
from functools import lru_cache

from rapidfuzz.distance import OSA

from services.core.domain import Item, ItemLabel
from services.core.embedding import Embedder
from services.core.engines.base import Hit, SearchEngine, Vector, fuzzy_distance, suggest_parts
from services.core.errors import ValidationError
from services.core.filters import Filter, HiddenItems, only_visible, without_hidden
from services.search.answer_cache import AnswerCache
from services.search.cache import CacheInfo, CachingEmbedder
from services.search.fusion import RRFFuser, fused_order_key
from services.search.retrievers import candidates_from_hits
from services.search.settings import SuggestSettings
from services.search.types import Candidate, LegReport, fold, new_query_id

PREFIX = "prefix"
FUZZY = "fuzzy"
VECTOR = "vector"
MAX_SUGGEST_SIZE = 50

_WORD = re.compile(r"\w+", re.UNICODE)
Leg = Callable[[], list[Hit]]
# What ends a clause of a title. Not the full stop: in titles it marks abbreviations ("Alien vs. Predator").
_CLAUSE_BREAK = re.compile(r"[:;,!?()\[\]{}|/–—]| - ")


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    score: float


@dataclass(frozen=True, slots=True)
class SuggestedItem:
    id: str
    item: Item
    score: float
    sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SuggestResult:
    text: str
    completions: list[Completion]
    items: list[SuggestedItem]
    legs: tuple[LegReport, ...]
    query_id: str
    cached: bool = False  # held from an earlier request (its legs are those of the request that made it)


def normalise_typed(text: str) -> str:
    """NFC and single spaces, keeping one trailing space: "the " (a completed word) differs from "the"."""
    text = unicodedata.normalize("NFC", text)
    core = " ".join(text.split())
    return f"{core} " if core and text[-1:].isspace() else core


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance (a transposition costs 1, as the engines' fuzzy queries), capped at
    limit + 1. rapidfuzz's C++ is about 400 times faster than the same loop in Python (0.13 against 60 µs for
    two 12-letter words here), and completions compare every typed word with the words of up to 20 titles."""
    return int(OSA.distance(a, b, score_cutoff=limit))


def _word_matches(token: str, word: str, is_prefix: bool, allowed: int) -> bool:
    if token == word or (is_prefix and token.startswith(word)):
        return True
    # Lengths further apart than the edits allowed cannot match (an edit changes the length by one at most):
    # most title words fail here, without a call into rapidfuzz.
    if not allowed or abs(len(token) - len(word)) > allowed:
        return False
    return edit_distance(word, token, allowed) <= allowed


@dataclass(frozen=True, slots=True)
class TitleWords:
    """A title's words folded (what typed words are compared with), for each the last word of its clause (a
    colon, comma, bracket or dash ends a clause), and where each word starts and ends in the title (a
    completion shows the title's own text between two words: "philosopher's", "spider-man").

    Flat tuples of numbers, not a (start, end) pair per word: every object kept here is one more for the young
    GC generation, and a keystroke that meets new titles keeps a few of these (8,400 young objects, 5,100 of
    them tuples, when the spans were pairs)."""

    keys: tuple[str, ...]
    clause_end: tuple[int, ...]
    starts: tuple[int, ...]
    ends: tuple[int, ...]


@lru_cache(maxsize=8192)
def title_words(title: str) -> TitleWords:
    """Kept per title: each keystroke of a word meets the same titles again."""
    found = list(_WORD.finditer(title))
    starts = tuple(m.start() for m in found)
    stops = tuple(m.end() for m in found)
    words = (m.group().lower() for m in found)
    keys = tuple(words if title.isascii() else map(fold, words))  # an ASCII word folds to its lower case
    ends = [len(found) - 1] * len(found)
    for i in range(len(found) - 2, -1, -1):
        between = title[stops[i] : starts[i + 1]]
        ends[i] = i if between != " " and _CLAUSE_BREAK.search(between) else ends[i + 1]
    return TitleWords(keys, tuple(ends), starts, stops)


@lru_cache(maxsize=8192)
def duplicate_key(title: str, brand: str | None) -> tuple[str, str]:
    """Two suggestions are one when their titles' words and their brands match, case and punctuation aside."""
    return " ".join(_WORD.findall(title.casefold())), (brand or "").casefold()


# A typed word as completions match it: the word, whether it is the prefix being typed, the edits allowed.
TypedWord = tuple[str, bool, int]


def typed_words(completed: Sequence[str], prefix: str | None) -> tuple[TypedWord, ...]:
    words = [(fold(w), False, fuzzy_distance(w)) for w in completed]
    if prefix:
        words.append((fold(prefix), True, fuzzy_distance(prefix)))
    return tuple(words)


def _match_from(tokens: tuple[str, ...], words: tuple[TypedWord, ...], anchor: int, consecutive: bool) -> int | None:
    """The title word where the typed words end, when they match from `anchor` on (next to each other, or
    with title words between them); None if they do not."""
    pos = anchor
    for n, (word, is_prefix, allowed) in enumerate(words):
        if n:
            pos += 1
            while not consecutive and pos < len(tokens) and not _word_matches(tokens[pos], word, is_prefix, allowed):
                pos += 1
        if pos >= len(tokens) or not _word_matches(tokens[pos], word, is_prefix, allowed):
            return None
    return pos


def completion_in(title: str, words: tuple[TypedWord, ...], max_words: int = 10) -> str | None:
    """`completion_for` with the typed words prepared once (a keystroke looks in up to 20 titles)."""
    tw = title_words(title)
    tokens = tw.keys
    if not words or not tokens:
        return None
    first, first_is_prefix, first_allowed = words[0]
    span: tuple[int, int] | None = None
    for anchor, token in enumerate(tokens):
        if not _word_matches(token, first, first_is_prefix, first_allowed):
            continue
        last = _match_from(tokens, words, anchor, consecutive=True)
        if last is not None:
            span = (anchor, last)
            break
        if span is None and (last := _match_from(tokens, words, anchor, consecutive=False)) is not None:
            span = (anchor, last)
    if span is None:
        return None
    anchor, stop = span
    last = min(tw.clause_end[stop], anchor + max_words - 1)
    return " ".join(title[tw.starts[anchor] : tw.ends[last]].lower().split())


def completion_for(title: str, completed: Sequence[str], prefix: str | None, max_words: int = 10) -> str | None:
    """The part of `title` that completes the typed words, lower-cased: from the title word that matches the
    first typed word to the end of that clause (a colon, comma, bracket or dash ends it). None when the typed
    words do not all match title words in order (e.g. a hit found only by its vector)."""
    return completion_in(title, typed_words(completed, prefix), max_words)


def vector_keys(query: str, min_chars: int) -> list[str]:
    """Texts whose cached vector may stand for `query`, best first: the query itself, then its earlier
    keystrokes back to the completed words ("interstel", "interste", ... for "interstell"; "the dark" for
    "the dark kn"). A vector one keystroke old is close to the fresh one; one of another phrase is not."""
    last = query.rsplit(" ", 1)[-1]
    floor = max(min_chars, len(query) - len(last))
    keys = (query[:n].rstrip() for n in range(len(query), floor - 1, -1))
    return list(dict.fromkeys(t for t in keys if len(t) >= min_chars))


class EmptyVectorSearches:
    """Which held vectors' searches found nothing above the floor, by (text, filter), for `ttl_s` seconds;
    bounded, least recently found first out, thread-safe (the vector leg records on the executor's thread)."""

    def __init__(self, ttl_s: float, maxsize: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._maxsize = maxsize
        self._clock = clock
        self._found_at: OrderedDict[tuple[str, Filter], float] = OrderedDict()
        self._lock = threading.Lock()

    def found_empty(self, text: str, flt: Filter) -> None:
        key = self._key(text, flt)
        if key is None:
            return
        with self._lock:
            self._found_at[key] = self._clock()
            self._found_at.move_to_end(key)
            if len(self._found_at) > self._maxsize:
                self._found_at.popitem(last=False)

    def seconds_since(self, text: str, flt: Filter) -> float | None:
        """How long ago the search of `text`'s vector under `flt` found nothing, if within the TTL."""
        key = self._key(text, flt)
        if key is None:
            return None
        with self._lock:
            at = self._found_at.get(key)
            if at is None:
                return None
            age = self._clock() - at
            if age > self._ttl_s:
                del self._found_at[key]
                return None
            return age

    def clear(self) -> None:
        with self._lock:
            self._found_at.clear()

    def _key(self, text: str, flt: Filter) -> tuple[str, Filter] | None:
        if self._ttl_s <= 0:
            return None
        try:
            hash(flt)
        except TypeError:  # a filter value that cannot be hashed (a list): searched every time, never an error
            return None
        return text, flt


def _hashable(key: tuple[object, ...]) -> Hashable | None:
    """The key itself, or None when a part of it cannot be hashed (a filter with a list for a value): what
    cannot be found again is never held."""
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _timed(name: str, leg: Leg) -> tuple[list[Hit], LegReport]:
    start = time.perf_counter()
    hits = leg()
    return hits, LegReport(name, len(hits), round((time.perf_counter() - start) * 1000, 3))


class Suggester:
    def __init__(
        self,
        engine: SearchEngine,
        alias: str,
        embedder: Embedder | None,
        settings: SuggestSettings,
        *,
        executor: Executor | None = None,
        max_terms: int = 64,
        hidden: HiddenItems | None = None,
    ) -> None:
        self._engine = engine
        self._hidden = hidden
        self._alias = alias
        self._embedder = embedder
        self._settings = settings
        self._executor = executor
        self._max_terms = max_terms
        self._fuser = RRFFuser(settings.rrf_k, settings.weights)
        self._empty_vectors = EmptyVectorSearches(settings.vector_empty_ttl_s)
        self._answers: AnswerCache[SuggestResult] | None = (
            AnswerCache(settings.answer_cache, settings.answer_cache_ttl_s) if settings.answer_cache else None
        )
        self._vector_hits: AnswerCache[tuple[Hit, ...]] | None = (
            AnswerCache(settings.vector_hits_cache, settings.answer_cache_ttl_s) if settings.vector_hits_cache else None
        )

    def _text_legs(
        self, typed: str, prefix: str | None, k: int, flt: Filter
    ) -> tuple[list[tuple[str, Leg]], Leg | None]:
        """The text legs to run side by side, and the fuzzy leg when it waits for the prefix leg's count (else
        it is among the first)."""
        s = self._settings
        w = s.prefix_popularity_weight
        legs: list[tuple[str, Leg]] = [
            (PREFIX, lambda: self._engine.prefix_suggest(self._alias, typed, k=k, filter=flt, popularity_weight=w)),
        ]
        fuzzy: Leg | None = None
        if prefix is not None and len(prefix) >= s.fuzzy_min_chars:

            def fuzzy_leg() -> list[Hit]:
                return self._engine.prefix_suggest(self._alias, typed + " ", k=k, filter=flt, popularity_weight=w)

            fuzzy = fuzzy_leg
            if not s.fuzzy_fallback:
                legs.append((FUZZY, fuzzy))
                fuzzy = None
        return legs, fuzzy

    def _vector_plan(
        self, query: str, k: int, flt: Filter, token: Hashable | None
    ) -> tuple[Hashable, Leg | None, LegReport | None]:
        """What the vector leg does for this text: what it searches (part of a held answer's key: the same text,
        filter and index state searched the same way make the same answer), the leg if it runs, or the report
        of why it does not (or of the hits it holds). A text whose vector is not held yet is sent to be embedded
        in the background, and its vector searched there, for the next keystroke."""
        s = self._settings
        embedder = self._embedder
        if embedder is None or len(query) < s.vector_min_chars:
            return None, None, None
        if not isinstance(embedder, CachingEmbedder):
            # No cache to consult (a tool or a test with a bare model): embed on the request path.
            return "embedded now", (lambda: self._vector_search(embedder.embed([query])[0], None, k, flt, None)), None
        held = next(
            ((t, v) for t in vector_keys(query, s.vector_min_chars) if (v := embedder.cached(t)) is not None), None
        )
        if held is None or held[0] != query:
            embedder.embed_later(
                query, idle_s=s.vector_embed_idle_ms / 1000, then=lambda vec: self._search_ahead(query, vec, k, flt)
            )
        if held is None:
            return (
                "no vector",
                None,
                LegReport(VECTOR, 0, 0.0, "query vector not cached yet (embedding it)", "no_query_vector"),
            )
        text, vec = held
        age = self._empty_vectors.seconds_since(text, flt)
        if age is not None:
            why = f"the vector of {text!r} found nothing above {s.vector_min_score:g} {age:.0f} s ago"
            return ("found nothing", text), None, LegReport(VECTOR, 0, 0.0, why, "vector_found_nothing")
        hits_key = self._hits_key(text, k, flt, token)
        if hits_key is not None and self._vector_hits is not None and (ready := self._vector_hits.get(hits_key)):
            return ("searched", text), (lambda: list(ready)), LegReport(VECTOR, len(ready), 0.0, held=True)
        return ("searched", text), (lambda: self._vector_search(vec, text, k, flt, hits_key)), None

    def _vector_search(
        self, vec: Vector, text: str | None, k: int, flt: Filter, hits_key: Hashable | None
    ) -> list[Hit]:
        """The vector leg's search; what it found above the floor is held under `hits_key` (taken before the
        search, as an answer's key is), and a search that found nothing is remembered as such."""
        s = self._settings
        hits = self._engine.vector_search(self._alias, vec, k=k, filter=flt)
        close = [h for h in hits if h.score >= s.vector_min_score]
        if not close and text is not None:
            self._empty_vectors.found_empty(text, flt)
        elif close and hits_key is not None and self._vector_hits is not None:
            self._vector_hits.put(hits_key, tuple(close))
        return close

    def _search_ahead(self, text: str, vec: Vector, k: int, flt: Filter) -> None:
        """On the embedder's thread, once `text`'s vector is held: search it now, while the typist pauses, so
        that the next keystroke (which stands this vector in for its own) finds the hits ready."""
        if self._vector_hits is None:
            return
        hits_key = self._hits_key(text, k, flt, self._state_token())
        if hits_key is None or self._vector_hits.holds(hits_key):  # not a keystroke's lookup: not counted
            return
        if self._empty_vectors.seconds_since(text, flt) is None:
            self._vector_search(vec, text, k, flt, hits_key)

    def _hits_key(self, text: str, k: int, flt: Filter, token: Hashable | None) -> Hashable | None:
        if token is None or self._vector_hits is None:
            return None
        return _hashable((text, k, flt, token))

    def _state_token(self) -> Hashable | None:
        """The engine's state token when something is held by it (None: nothing may be held)."""
        if self._answers is None and self._vector_hits is None:
            return None
        return self._engine.state_token(self._alias)

    def run(
        self,
        text: str,
        *,
        size: int = 5,
        completions: int = 5,
        filter: Filter | None = None,
        query_id: str | None = None,
    ) -> SuggestResult:
        if not 1 <= size <= MAX_SUGGEST_SIZE:
            raise ValidationError("size", f"must be between 1 and {MAX_SUGGEST_SIZE}")
        if not 0 <= completions <= MAX_SUGGEST_SIZE:
            raise ValidationError("completions", f"must be between 0 and {MAX_SUGGEST_SIZE}")
        typed = normalise_typed(text)
        if not typed.strip():
            raise ValidationError("q", "must not be empty")
        completed, prefix = suggest_parts(typed, self._max_terms)
        words = typed_words(completed, prefix)
        k = max(self._settings.depth, size)
        # the hide rules' items are left out inside every leg, as unavailable ones are (a takedown holds here too)
        visible = only_visible(without_hidden(filter, self._hidden, typed.strip()))
        # The token is read before the legs run: a write landing meanwhile changes it, so an answer (or vector
        # hits) that may have seen the write is never held under the token from before it.
        token = self._state_token()
        vector_plan, vector_leg, vector_report = self._vector_plan(typed.strip(), k, visible, token)
        # The vector leg's plan is in the answer's key: once the text's own vector is embedded, the answer made
        # with an earlier keystroke's is not served.
        held_as = self._answer_key(typed, size, completions, visible, vector_plan, token)
        if held_as is not None and self._answers is not None and (held := self._answers.get(held_as)) is not None:
            return replace(held, query_id=query_id or new_query_id(), cached=True)
        legs, fuzzy = self._text_legs(typed, prefix, k, visible)
        held_vector = vector_report is not None and vector_report.held  # its hits are in hand: no thread to wait on
        left_out = [vector_report] if vector_report is not None and not held_vector else []
        if vector_leg is not None and not held_vector:
            legs.append((VECTOR, vector_leg))

        runs = self._run_legs(legs)
        if held_vector:
            assert vector_leg is not None and vector_report is not None
            legs.append((VECTOR, vector_leg))
            runs.append((vector_leg(), vector_report))
        if fuzzy is not None:
            found_by_prefix = len(runs[0][0])
            if found_by_prefix < size:
                legs.insert(1, (FUZZY, fuzzy))
                runs.insert(1, _timed(FUZZY, fuzzy))
            else:
                left_out.append(
                    LegReport(FUZZY, 0, 0.0, f"the prefix leg found {found_by_prefix}", "prefix_found_enough")
                )

        merged: dict[str, Candidate] = {}
        for (name, _), (hits, _) in zip(legs, runs, strict=True):
            for c in candidates_from_hits(name, hits):
                seen = merged.get(c.id)
                merged[c.id] = c if seen is None else seen.merged(c)
        # Ranked without building the items (the engine gives each hit's popularity): only the few looked at
        # below are built. At 100k items, building those a keystroke meets for the first time was a third of
        # the suggester's own work beside its prefix query on the slowest keystrokes.
        ranked = self._ranked(list(merged.values()))

        items: list[SuggestedItem] = []
        seen_titles: set[tuple[str, str]] = set()
        found: list[Completion] = []
        seen_texts: set[str] = set()
        # A title or brand is looked in once per pass: the variants of one film (editions, formats) share a
        # title, and a keystroke's 20 hits are often four titles, so the loop walks them all for a fifth.
        looked_in: dict[tuple[str, bool], str | None] = {}
        exact = tuple((word, is_prefix, 0) for word, is_prefix, _ in words)
        for cand, score in ranked:
            if len(items) >= size and len(found) >= completions:
                break
            # The label, not the item: of the up to 20 candidates walked, only the ones shown are built.
            label = cand.label
            if not label.available:  # the filter says so already; never trust one line to keep a promise
                continue
            key = duplicate_key(label.title, label.brand)
            if len(items) < size and key not in seen_titles:
                seen_titles.add(key)
                items.append(SuggestedItem(cand.id, cand.item, score, cand.sources))
            # Completions come from what a text leg matched: the title, else the brand ("spielb" -> "steven
            # spielberg"). A hit only the vector leg found seldom holds the typed words in order (a text leg
            # would have ranked it), and looking costs a fuzzy scan of its words.
            if len(found) < completions and cand.ranks.keys() - {VECTOR}:
                done = self._completion(label, words, exact, looked_in)
                if done and done not in seen_texts:
                    seen_texts.add(done)
                    found.append(Completion(done, score))
        reports = (*(report for _, report in runs), *left_out)
        result = SuggestResult(typed, found, items, reports, query_id or new_query_id())
        # An answer the vector leg missed by its budget is not held: the next one may not miss it.
        if held_as is not None and self._answers is not None and all(r.reason != "over_budget" for r in reports):
            self._answers.put(held_as, result)
        return result

    def _completion(
        self,
        label: ItemLabel,
        words: tuple[TypedWord, ...],
        exact: tuple[TypedWord, ...],
        looked_in: dict[tuple[str, bool], str | None],
    ) -> str | None:
        """What completes the typed words: the title, else the whole brand ("spielb" -> "steven spielberg"),
        each first with the words as typed and only then with the edits allowed. The engine matched one of the
        two, and a hit its brand found may have a title a few edits away ("spies" for "spielb")."""
        for typed in (exact, words) if exact != words else (words,):
            for text, whole in ((label.title, False), (label.brand, True)):
                if not text:
                    continue
                key = (text, typed is exact)
                if key not in looked_in:
                    done = completion_in(text, typed, self._settings.max_completion_words)
                    looked_in[key] = " ".join(text.lower().split()) if done and whole else done
                if looked_in[key]:
                    return looked_in[key]
        return None

    def _answer_key(
        self, typed: str, size: int, completions: int, visible: Filter, vector_plan: Hashable, token: Hashable | None
    ) -> Hashable | None:
        """What a held answer is found by, or None when none may be held (no cache, an engine without a
        state token, a filter value that cannot be hashed)."""
        if self._answers is None or token is None:
            return None
        return _hashable((typed, size, completions, visible, vector_plan, token))

    def answer_cache_info(self) -> CacheInfo | None:
        return None if self._answers is None else self._answers.info()

    def vector_hits_info(self) -> CacheInfo | None:
        return None if self._vector_hits is None else self._vector_hits.info()

    def forget(self) -> None:
        """Drop what is held (answers, vector hits, empty searches): for a suggester whose version is retired,
        whose entries no request will find again, but which requests in flight may still be using."""
        for held in (self._answers, self._vector_hits, self._empty_vectors):
            if held is not None:
                held.clear()

    def _run_legs(self, legs: Sequence[tuple[str, Leg]]) -> list[tuple[list[Hit], LegReport]]:
        """Every leg side by side: the text legs to the end, the vector leg within its budget after them."""
        if self._executor is None or len(legs) == 1:
            return [_timed(name, fn) for name, fn in legs]
        started = time.perf_counter()
        futures = [self._executor.submit(_timed, name, fn) for name, fn in legs[1:]]
        out = [_timed(*legs[0])]
        budget = self._settings.vector_budget_ms
        for (name, _), future in zip(legs[1:], futures, strict=True):
            if name != VECTOR or budget is None:
                out.append(future.result())
                continue
            try:
                out.append(future.result(timeout=budget / 1000))
            except FuturesTimeout:
                waited = round((time.perf_counter() - started) * 1000, 3)
                out.append(([], LegReport(name, 0, waited, f"over its {budget:g} ms budget", "over_budget")))
        return out

    def _ranked(self, candidates: Sequence[Candidate]) -> list[tuple[Candidate, float]]:
        """Fused score (RRF) scaled to the best one, plus the popularity prior; best first, ties in the fused
        order. One sort: fusing into an ordered list first and sorting that again cost a keystroke twice."""
        if not candidates:
            return []
        fused = self._fuser.scores(candidates)
        best = max(fused) or 1.0
        pops = [max(c.popularity or 0.0, 0.0) for c in candidates]
        scale = math.log1p(max(pops))
        weight = self._settings.popularity_weight
        final = [
            f / best + (weight * math.log1p(p) / scale if scale > 0 else 0.0) for f, p in zip(fused, pops, strict=True)
        ]
        keys = [(-final[i], fused_order_key(c, fused[i])) for i, c in enumerate(candidates)]
        order = sorted(range(len(candidates)), key=keys.__getitem__)
        return [(candidates[i], round(final[i], 6)) for i in order]
