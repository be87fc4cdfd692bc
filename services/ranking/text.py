"""Text analysis for ranking features: words, case and accents folded, English stop words dropped, Snowball-stemmed, and
each term numbered in a process-wide vocabulary so that features are numpy operations over term ids.

Analysing a candidate's title and body is the costly part of feature computation, and the same items come
back query after query, so each analysed text is remembered (keyed by the text itself) and each word's stem
too. The analysis is the ranking stage's own, independent of any engine's analyser, so that a model's
features mean the same thing on every engine.
"""

from __future__ import annotations

import re
import threading
import zlib
from collections.abc import Sequence
from itertools import pairwise
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import snowballstemmer

from services.search.types import fold

_WORD = re.compile(r"\w+", re.UNICODE)

# A short English list (the classic Lucene/SMART core): words that carry no topic.
_STOP_WORDS_TEXT = """
    a an and are as at be been being but by can could did do does for from had has have how if in into is it
    its itself may might must no not of on or shall should so such than that the their them then there these they
    this those to was were what when where which while who whom why will with would about above after again against
    all any because before below between both during each few further here more most other our out over own same
    some very you your we us i me my he him his she her also only just upon under"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())

Ids = npt.NDArray[np.int64]


class AnalysedText(NamedTuple):
    """A text as the features read it (a named tuple: built in a fraction of a frozen dataclass's time, which
    counts when the feature extractor rebuilds a hundred of them per query from its cache).

    `terms`: term ids in order; `unique`/`counts`: its distinct term ids (sorted) and how often each occurs;
    `bigrams`: its adjacent pairs as sorted unique int64 keys (`pair_key`); `joined`: " id id ... " with a
    space at both ends, for phrase search.
    """

    terms: Ids
    unique: Ids
    counts: Ids
    bigrams: Ids
    joined: str
    length: int  # terms


def pair_key(first: Ids, second: Ids) -> Ids:
    """Adjacent term pairs as one int64 each (term ids are below 2**31)."""
    return (first << 31) | second


def _analysed(terms: Ids) -> AnalysedText:
    # Plain Python over the list: texts are tens of terms, where each np.unique call costs more in overhead
    # than the work (measured: about half the time of the numpy version).
    listed: list[int] = terms.tolist()
    counts: dict[int, int] = {}
    for term in listed:
        counts[term] = counts.get(term, 0) + 1
    unique = sorted(counts)
    bigrams = sorted({(a << 31) | b for a, b in pairwise(listed)})  # as pair_key
    return AnalysedText(
        terms,
        np.array(unique, dtype=np.int64),
        np.array([counts[t] for t in unique], dtype=np.int64),
        np.array(bigrams, dtype=np.int64),
        " " + " ".join(map(str, listed)) + " ",
        len(listed),
    )


EMPTY = _analysed(np.empty(0, np.int64))


class Analyser:
    """Thread-safe, caching analyser.

    `max_texts` bounds the remembered texts (titles and bodies; when full the oldest half is forgotten) and
    `max_vocabulary` the numbered words (past it, a new word gets a hashed id beyond the vocabulary: two rare
    words may then share an id, which only blurs a feature a little).
    """

    def __init__(self, max_texts: int = 100_000, max_vocabulary: int = 1_000_000) -> None:
        # snowballstemmer hands out PyStemmer's C build of the same algorithm when it is installed (a dependency):
        # the same stems, ~100x faster than its pure-Python one, which made a cold vocabulary most of a query.
        self._stemmer = snowballstemmer.stemmer("english")
        self._ids: dict[str, int] = {}  # word -> term id (of its stem)
        self._stem_ids: dict[str, int] = {}
        self._texts: dict[str, AnalysedText] = {}
        self._max_texts = max_texts
        self._max_vocabulary = max_vocabulary
        self._lock = threading.Lock()

    def _term_id(self, word: str) -> int:
        with self._lock:
            found = self._ids.get(word)
            if found is not None:
                return found
            stem = self._stemmer.stemWord(word)
            term = self._stem_ids.get(stem)
            if term is None:
                if len(self._stem_ids) < self._max_vocabulary:
                    term = len(self._stem_ids)
                    self._stem_ids[stem] = term
                else:
                    term = self._max_vocabulary + zlib.crc32(stem.encode()) % self._max_vocabulary
            if len(self._ids) < 4 * self._max_vocabulary:
                self._ids[word] = term
            return term

    def term_ids(self, text: str) -> Ids:
        """The term ids of a text's stemmed, stop-word-free words, in order, accents folded as the engines fold
        them ("Amélie" is "amelie"). A text of stop words alone keeps them: the film "Her", the query "it"."""
        ids = self._ids
        words = _WORD.findall(fold(text))
        out: list[int] = []
        for word in [w for w in words if w not in STOP_WORDS] or words:
            term = ids.get(word)
            out.append(term if term is not None else self._term_id(word))
        return np.array(out, dtype=np.int64)

    def analyse(self, text: str) -> AnalysedText:
        if not text:
            return EMPTY
        found = self._texts.get(text)  # a plain dict read: atomic, no lock on the hot path
        if found is not None:
            return found
        result = _analysed(self.term_ids(text))
        with self._lock:
            if len(self._texts) >= self._max_texts:
                for key in list(self._texts)[: self._max_texts // 2]:
                    del self._texts[key]
            self._texts[text] = result
        return result

    def analyse_all(self, texts: Sequence[str]) -> list[AnalysedText]:
        return [self.analyse(t) for t in texts]

    def analyse_once(self, text: str) -> AnalysedText:
        """Analysed without remembering the text: for callers that keep the result themselves (the feature
        extractor keeps each item's, by id), so that it is not held twice."""
        return _analysed(self.term_ids(text)) if text else EMPTY
