"""The ranking features: a declared, versioned list, computed for all of a request's candidates in one
vectorised pass (a candidates × features float32 matrix).

Every feature is read from what the candidates already carry (each retriever's score and rank, the item's
fields) and normalised within the request (relative to the best candidate, min-max, ranks, coverage
fractions, BM25 whose statistics come from the candidate set), so that a model trained on one collection
reads the same kind of numbers on another. A missing value (no vector score for a keyword-only hit, an item
without a rating) is NaN, which LightGBM treats as missing.

The neighbour features compare the candidates with one another (the cluster hypothesis: a document close to
documents that score well is likely relevant too): for each, the fused scores of its neighbourhood, itself and
its nearest other candidates by item vector. They need the candidates' vectors, which the extractor asks of a
`VectorLookup` (the engine's `get_vectors`); without one they are NaN.

Changing what a feature means, or the list, needs a new `FEATURE_SET` version: the registry refuses a model
whose feature list differs from the one the service computes.
"""

from __future__ import annotations

import hashlib
import logging
import math
import operator
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple, cast

import numpy as np
import numpy.typing as npt
from rapidfuzz.distance import OSA
from rapidfuzz.process import cdist

from services.core.engines.base import fuzzy_distance
from services.ranking.text import AnalysedText, Analyser, Ids, pair_key
from services.search.types import (
    KEYWORD,
    VECTOR,
    Candidate,
    FusedCandidate,
    SearchQuery,
    VectorLookup,
    candidate_vectors,
    fold,
)

Matrix = npt.NDArray[np.float32]
Floats = npt.NDArray[np.float64]
NAN = float("nan")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    name: str
    description: str


@dataclass(frozen=True, slots=True)
class FeatureSet:
    """A named, versioned feature list. `id` is what a model records and the service checks."""

    name: str
    version: int
    features: tuple[FeatureSpec, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def digest(self) -> str:
        """A digest of the ordered names: two lists with the same id but other names are told apart."""
        return hashlib.sha256("\n".join(self.names).encode()).hexdigest()[:16]

    def mismatch(self, name: str, version: int, names: Sequence[str]) -> str | None:
        """Why a model recorded with (name, version, names) cannot be scored with this set, or None."""
        if (name, version) != (self.name, self.version):
            return f"the model was trained on feature set {name}@{version}, the service computes {self.id}"
        if tuple(names) != self.names:
            missing = [n for n in self.names if n not in names]
            extra = [n for n in names if n not in self.names]
            if not missing and not extra:
                return f"the model's features are in another order than {self.id}'s"
            return (
                f"the model's feature list differs from {self.id}: "
                f"missing {missing or 'none'}, unknown {extra or 'none'}"
            )
        return None


_F = FeatureSpec
SEARCH_FEATURES = FeatureSet(
    "trawl-search",
    4,
    (
        _F("keyword_present", "1 if the keyword (BM25) retriever returned the item"),
        _F("keyword_score_rel", "BM25 score / the best BM25 score of the request (NaN if absent)"),
        _F("keyword_minmax", "BM25 score min-max scaled over the keyword hits (0 if absent)"),
        _F("keyword_rank_inv", "1 / keyword rank (0 if absent)"),
        _F("vector_present", "1 if the vector (k-NN) retriever returned the item"),
        _F("vector_cosine", "cosine similarity of query and item vectors (NaN if absent)"),
        _F("vector_gap", "best cosine of the request minus this cosine (NaN if absent)"),
        _F("vector_minmax", "cosine min-max scaled over the vector hits (0 if absent)"),
        _F("vector_rank_inv", "1 / vector rank (0 if absent)"),
        _F("sources", "how many retrievers returned the item"),
        _F("rrf", "reciprocal-rank fusion score, k=60, equal weights"),
        _F("minmax_fused", "mean of the min-max scaled keyword and vector scores"),
        _F("query_terms", "analysed query terms (stemmed, without stop words)"),
        _F("title_coverage", "share of distinct query terms found in the title"),
        _F("body_coverage", "share of distinct query terms found in the body"),
        _F(
            "title_fuzzy_coverage",
            "share of distinct query words found in the title within the edits a fuzzy query allows (a typo forgiven)",
        ),
        _F("title_bm25_rel", "BM25 of the title over the candidate set / the request's best"),
        _F("body_bm25_rel", "BM25 of the body over the candidate set / the request's best"),
        _F("title_bigrams", "share of the query's adjacent term pairs found adjacent in the title"),
        _F("body_bigrams", "share of the query's adjacent term pairs found adjacent in the body"),
        _F("title_phrase", "1 if the whole analysed query appears as a phrase in the title"),
        _F("body_phrase", "1 if the whole analysed query appears as a phrase in the body"),
        _F("title_exact", "1 if the analysed title equals the analysed query"),
        _F("title_len_rel", "title terms / mean title terms of the candidates"),
        _F("body_len_rel", "body terms / mean body terms of the candidates"),
        _F("prf_title", "weighted share of feedback terms (from the top fused candidates) in the title"),
        _F("prf_body", "weighted share of feedback terms (from the top fused candidates) in the body"),
        _F("text_bm25_rel", "BM25 of title and body as one field over the candidate set / the request's best"),
        _F("expanded_bm25_rel", "text BM25 of the query expanded with the feedback terms (RM3-like) / best"),
        _F("category_match", "share of distinct query terms found in the categories, tags or brand"),
        _F("popularity_log", "log1p(popularity) (NaN if unknown)"),
        _F("rating", "the item's rating (NaN if unknown)"),
        _F("age_log_days", "log1p(days since published) (NaN if unknown)"),
        _F("available", "1 if the item is available"),
        _F(
            "neighbour_minmax",
            "similarity-weighted mean of `minmax_fused` over the candidate and its nearest other candidates by "
            "item vector (NaN without vectors)",
        ),
        _F("neighbour_max_minmax", "the best `minmax_fused` among the candidate and those nearest (NaN if no vectors)"),
    ),
)

RRF_K = 60
BM25_K1 = 1.2
BM25_B = 0.75
PRF_DF_DOCS = 50
NEIGHBOURS = 5  # 3 to 8 measured alike on Cranfield (docs/evaluation.md)
NEIGHBOUR_POOL = 100  # the head of the fused list, where a candidate can still reach the page


@dataclass(frozen=True, slots=True)
class FeatureMatrix:
    """Features of one request's candidates, in the candidates' order: rows are candidates."""

    feature_set: FeatureSet
    ids: tuple[str, ...]
    values: Matrix

    def row(self, i: int) -> dict[str, float]:
        """One candidate's features by name, without the missing (NaN) ones (for explain and the log)."""
        return {
            name: round(float(v), 6) for name, v in zip(self.feature_set.names, self.values[i], strict=True) if v == v
        }


_WORD = re.compile(r"\w+", re.UNICODE)


@lru_cache(maxsize=16_384)
def _words(text: str) -> tuple[str, ...]:
    """Folded words, unstemmed: a typo is measured against what was written, not against a stem."""
    return tuple(dict.fromkeys(_WORD.findall(fold(text))))


def _fuzzy_coverage(query: str, titles: Sequence[str]) -> Floats:
    """For each title, the share of the query's distinct words that are in it exactly or within the edits
    the engines' fuzzy queries allow (`fuzzy_distance`: none up to 2 letters, 1 up to 5, else 2). The keyword
    leg matches words exactly, so a typo'd title ("the godafther") reaches the candidates through the vector
    leg or the typo fallback with none of the title features; this is the feature that says it matches.
    One C call compares every query word with every distinct title word; a product spreads the answer."""
    words = _words(query)
    n = len(titles)
    if not words or not n:
        return np.zeros(n)
    per_title = [_words(t) for t in titles]
    vocab: dict[str, int] = {}
    for have in per_title:
        for w in have:
            vocab.setdefault(w, len(vocab))
    if not vocab:
        return np.zeros(n)
    allowed = np.array([fuzzy_distance(w) for w in words])
    dist = cdist(words, list(vocab), scorer=OSA.distance, dtype=np.int32, score_cutoff=int(allowed.max()))
    close = (dist <= allowed[:, None]).astype(np.float32)  # query words x title words
    has = np.zeros((n, len(vocab)), dtype=np.float32)  # titles x title words
    rows = np.repeat(np.arange(n), [len(h) for h in per_title])
    has[rows, [vocab[w] for h in per_title for w in h]] = 1.0
    covered: Floats = ((has @ close.T) > 0).mean(axis=1).astype(np.float64)
    return covered


def _minmax(values: Floats, present: npt.NDArray[np.bool_]) -> Floats:
    out = np.zeros_like(values)
    if not present.any():
        return out
    vals = values[present]
    low, high = vals.min(), vals.max()
    out[present] = 1.0 if high - low <= 1e-12 else (vals - low) / (high - low)
    return out


def _rel(values: Floats) -> Floats:
    best = float(values.max()) if values.size else 0.0
    return values / best if best > 0 else np.zeros_like(values)


class _Sparse:
    """One field of all candidates as a sparse matrix in coordinate form: row (candidate), key, count."""

    def __init__(self, rows: Ids, keys: Ids, counts: Floats, n: int) -> None:
        self.rows, self.keys, self.counts, self.n = rows, keys, counts, n

    @classmethod
    def terms(cls, docs: Sequence[AnalysedText]) -> _Sparse:
        return cls._of([d.unique for d in docs], [d.counts for d in docs])

    @classmethod
    def pairs(cls, docs: Sequence[AnalysedText]) -> _Sparse:
        return cls._of([d.bigrams for d in docs], None)

    @classmethod
    def _of(cls, keys: Sequence[Ids], counts: Sequence[Ids] | None) -> _Sparse:
        n = len(keys)
        if n == 0:
            return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), 0)
        sizes = np.fromiter(map(len, keys), dtype=np.int64, count=n)
        rows = np.repeat(np.arange(n), sizes)
        flat = np.concatenate(keys)
        values = np.concatenate(counts, dtype=np.float64) if counts is not None else np.ones(flat.shape[0])
        return cls(rows, flat, values, n)

    def head(self, rows: int) -> slice:
        """The entries of the first `rows` candidates: a slice, as entries are in candidate order."""
        return slice(0, int(np.searchsorted(self.rows, rows)))

    def dense(self, columns: Ids) -> Floats:
        """The n x len(columns) matrix of counts for the given keys (sorted, unique)."""
        out = np.zeros((self.n, columns.shape[0]))
        if columns.shape[0] == 0 or self.keys.shape[0] == 0:
            return out
        at = np.searchsorted(columns, self.keys)
        at[at == columns.shape[0]] = 0
        hit = columns[at] == self.keys
        out[self.rows[hit], at[hit]] = self.counts[hit]
        return out


def _bm25(tf: Floats, lengths: Floats, qtf: Floats) -> Floats:
    """BM25 of each row (a candidate's field) with document frequencies counted over the candidate set."""
    n = tf.shape[0]
    if n == 0 or tf.shape[1] == 0:
        return np.zeros(n)
    df = (tf > 0).sum(axis=0)
    idf = np.log1p((n - df + 0.5) / (df + 0.5))
    avg = max(float(lengths.mean()), 1e-9)
    norm = BM25_K1 * (1 - BM25_B + BM25_B * lengths / avg)
    scores: Floats = ((tf * (BM25_K1 + 1) / (tf + norm[:, None])) * (idf * qtf)).sum(axis=1)
    return scores


class _ItemTexts(NamedTuple):
    title: AnalysedText
    body: AnalysedText
    meta: AnalysedText  # categories, tags and brand


# A cache entry is a dict of the texts' digest and the fields of their three AnalysedTexts (arrays, strings and
# ints), not the objects. Why: CPython's cyclic GC never tracks a dict that holds only such values, so the
# cache costs the collector nothing. Held as objects (five tracked containers an entry), the entries that the
# catalog's long tail brings in piled up in the young generation: each evicted entry freed old objects, which
# CPython counts against the young generation's allocations, so its collection came late and then walked
# ~80,000 objects (over 100 ms, one search in a few hundred; docs/benchmarks.md, "GC pauses").
_Packed = dict[str, Any]
_PARTS = ("title", "body", "meta")
_FIELDS = AnalysedText._fields
_KEYS = tuple(f"{part}.{field}" for part in _PARTS for field in _FIELDS)
_READ = tuple(operator.itemgetter(*_KEYS[i : i + len(_FIELDS)]) for i in range(0, len(_KEYS), len(_FIELDS)))


def _packed(digest: int, texts: _ItemTexts) -> _Packed:
    entry = dict(zip(_KEYS, (*texts.title, *texts.body, *texts.meta), strict=True))
    entry["digest"] = digest
    return entry


def _unpacked(entry: _Packed) -> _ItemTexts:
    read_title, read_body, read_meta = _READ
    make = AnalysedText._make
    return _ItemTexts(make(read_title(entry)), make(read_body(entry)), make(read_meta(entry)))


class FeatureExtractor:
    """Computes `SEARCH_FEATURES` for a request's fused candidates (given in fused order).

    The `prf_docs` top fused candidates give `prf_terms` feedback terms (the highest summed tf/length x idf
    over those candidates, idf counted over the candidate set, query terms excluded): a pseudo-relevance
    feedback signal inside the request, with no second query to the engine.

    Analysing a candidate's texts is most of the cost, and the same items come back query after query, so
    the analysed title, body and categories of the last `cache_items` items are kept (least recently used
    go first), by item id and a digest of exactly those texts: an update that changes them is analysed again.
    """

    feature_set = SEARCH_FEATURES

    def __init__(
        self,
        analyser: Analyser | None = None,
        *,
        prf_docs: int = 10,
        prf_terms: int = 20,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        cache_items: int = 10_000,
        vectors: VectorLookup | None = None,
        neighbours: int = NEIGHBOURS,
    ) -> None:
        if cache_items < 0:
            raise ValueError("cache_items must be >= 0")
        if neighbours < 1:
            raise ValueError("neighbours must be >= 1")
        self._vectors = vectors
        self._neighbours = neighbours
        self._analyser = analyser or Analyser()
        self._prf_docs = prf_docs
        self._prf_terms = prf_terms
        self._clock = clock
        self._cache_items = cache_items
        self._analysed: OrderedDict[str, _Packed] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def analyser(self) -> Analyser:
        return self._analyser

    @property
    def params(self) -> dict[str, int]:
        """The parameters that change what the features mean (a model records them; see `RankingModel.check`)."""
        return {
            "prf_docs": self._prf_docs,
            "prf_terms": self._prf_terms,
            "prf_df_docs": PRF_DF_DOCS,
            "neighbours": self._neighbours,
            "neighbour_pool": NEIGHBOUR_POOL,
        }

    def run(self, query: SearchQuery, candidates: Sequence[FusedCandidate]) -> FeatureMatrix:
        cands = [c.candidate for c in candidates]
        cols = self._retrieval(cands)
        cols.update(self._text(query.text, cands))
        cols.update(self._item(cands))
        cols.update(self._neighbour(cands, cols["minmax_fused"]))
        n = len(cands)
        values = np.empty((n, len(self.feature_set.features)), dtype=np.float32)
        for j, name in enumerate(self.feature_set.names):
            values[:, j] = cols[name]
        return FeatureMatrix(self.feature_set, tuple(c.id for c in cands), values)

    def _retrieval(self, cands: Sequence[Candidate]) -> dict[str, Floats]:
        n = len(cands)
        cols: dict[str, Floats] = {}
        rrf = np.zeros(n)
        for leg in (KEYWORD, VECTOR):
            raw = np.fromiter((c.scores.get(leg, NAN) for c in cands), dtype=np.float64, count=n)
            ranks = np.fromiter((c.ranks.get(leg, 0) for c in cands), dtype=np.float64, count=n)
            present = ranks > 0
            cols[f"{leg}_present"] = present.astype(np.float64)
            cols[f"{leg}_minmax"] = _minmax(np.nan_to_num(raw), present)
            cols[f"{leg}_rank_inv"] = np.divide(1.0, ranks, out=np.zeros(n), where=present)
            rrf += np.divide(1.0, RRF_K + ranks, out=np.zeros(n), where=present)
            best = float(raw[present].max()) if present.any() else NAN
            if leg == KEYWORD:
                cols["keyword_score_rel"] = raw / best if best > 0 else np.full(n, NAN)
            else:
                cols["vector_cosine"] = raw
                cols["vector_gap"] = best - raw
        cols["sources"] = cols["keyword_present"] + cols["vector_present"]
        cols["rrf"] = rrf
        cols["minmax_fused"] = (cols["keyword_minmax"] + cols["vector_minmax"]) / 2
        return cols

    def _text(self, text: str, cands: Sequence[Candidate]) -> dict[str, Floats]:
        n = len(cands)
        an = self._analyser
        q = an.term_ids(text)
        q_unique, q_counts = np.unique(q, return_counts=True)
        m = q_unique.shape[0]
        q_pairs = np.unique(pair_key(q[:-1], q[1:])) if q.shape[0] > 1 else np.empty(0, np.int64)
        phrase = " " + " ".join(map(str, q.tolist())) + " "
        analysed = self._item_texts(cands)
        titles = [a.title for a in analysed]
        bodies = [a.body for a in analysed]
        sparse = {"title": _Sparse.terms(titles), "body": _Sparse.terms(bodies)}
        feedback, weights = self._feedback(sparse["title"], sparse["body"], titles, bodies, q_unique)
        # one pass per field over its terms: the query's terms and the feedback terms together
        columns = np.union1d(q_unique, feedback)
        q_at = np.searchsorted(columns, q_unique)
        f_at = np.searchsorted(columns, feedback)
        cols: dict[str, Floats] = {"query_terms": np.full(n, float(q.shape[0]))}
        both_counts = np.zeros((n, columns.shape[0]))
        both_lengths = np.zeros(n)
        for field, docs in (("title", titles), ("body", bodies)):
            counts = sparse[field].dense(columns)
            both_counts += counts
            tf = counts[:, q_at]
            lengths = np.fromiter((d.length for d in docs), dtype=np.float64, count=n)
            both_lengths += lengths
            cols[f"{field}_coverage"] = (tf > 0).mean(axis=1) if m else np.zeros(n)
            cols[f"{field}_bm25_rel"] = _rel(_bm25(tf, lengths, q_counts.astype(np.float64)))
            cols[f"prf_{field}"] = (counts[:, f_at] > 0) @ weights if feedback.shape[0] else np.zeros(n)
            # a query bigram can only be where a query term is: look there only
            bigrams = np.zeros(n)
            if q_pairs.shape[0]:
                terms_at = np.flatnonzero(tf.any(axis=1))
                bigrams[terms_at] = _Sparse.pairs([docs[i] for i in terms_at]).dense(q_pairs).mean(axis=1)
            cols[f"{field}_bigrams"] = bigrams
            # a phrase can only be where every query term is: look there only
            has_phrase = np.zeros(n)
            if m:
                for i in np.flatnonzero((tf > 0).all(axis=1)):
                    has_phrase[i] = phrase in docs[i].joined
            cols[f"{field}_phrase"] = has_phrase
            mean = float(lengths.mean()) if n else 0.0
            cols[f"{field}_len_rel"] = lengths / mean if mean > 0 else np.zeros(n)
        # the whole text (title and body as one field): the query alone, and expanded with the feedback terms
        # (RM3-like: half the weight on the query's terms, half on the feedback terms)
        cols["text_bm25_rel"] = _rel(_bm25(both_counts[:, q_at], both_lengths, q_counts.astype(np.float64)))
        expanded = np.zeros(columns.shape[0])
        expanded[q_at] += 0.5 * q_counts / max(q_counts.sum(), 1)
        if feedback.shape[0]:
            expanded[f_at] += 0.5 * weights
        cols["expanded_bm25_rel"] = _rel(_bm25(both_counts, both_lengths, expanded))
        exact = np.zeros(n)
        for i in np.flatnonzero(cols["title_phrase"]):
            exact[i] = titles[i].length == q.shape[0]
        cols["title_exact"] = exact
        meta = [a.meta for a in analysed]
        cols["category_match"] = (_Sparse.terms(meta).dense(q_unique) > 0).mean(axis=1) if m else np.zeros(n)
        cols["title_fuzzy_coverage"] = _fuzzy_coverage(text, [c.item.title for c in cands])
        return cols

    def _item_texts(self, cands: Sequence[Candidate]) -> list[_ItemTexts]:
        """Each candidate's analysed texts, from the cache when its texts are unchanged (the lock is taken
        once for the lookups and once for the additions, not per candidate)."""
        items = [c.item for c in cands]
        # in-process only, like the cache; with the id, a collision is out of reach
        digests = [hash((i.title, i.body, tuple(i.categories), tuple(i.tags), i.brand)) for i in items]
        out: list[_ItemTexts | None] = []
        with self._lock:
            cache = self._analysed
            for c, digest in zip(cands, digests, strict=True):
                held = cache.get(c.id)
                if held is not None and held["digest"] == digest:
                    cache.move_to_end(c.id)
                    out.append(_unpacked(held))
                else:
                    out.append(None)
        missing = [i for i, texts in enumerate(out) if texts is None]
        if not missing:
            return cast(list[_ItemTexts], out)
        an = self._analyser
        for i in missing:
            item = items[i]
            meta = " ".join([*item.categories, *item.tags, item.brand or ""])
            out[i] = _ItemTexts(an.analyse_once(item.title), an.analyse_once(item.body), an.analyse_once(meta))
        if self._cache_items:
            with self._lock:
                for i in missing:
                    self._analysed[cands[i].id] = _packed(digests[i], cast(_ItemTexts, out[i]))
                    self._analysed.move_to_end(cands[i].id)
                while len(self._analysed) > self._cache_items:
                    self._analysed.popitem(last=False)
        return cast(list[_ItemTexts], out)

    def _feedback(
        self,
        title: _Sparse,
        body: _Sparse,
        titles: Sequence[AnalysedText],
        bodies: Sequence[AnalysedText],
        exclude: Ids,
    ) -> tuple[Ids, Floats]:
        """Feedback terms (sorted ids) and their weights (summing to 1). Document frequencies are counted
        over the first `PRF_DF_DOCS` candidates' titles and bodies: enough for an idf, cheap to count."""
        top = min(self._prf_docs, title.n)
        none = (np.empty(0, np.int64), np.empty(0))
        if top == 0 or self._prf_terms == 0:
            return none
        keys, tf = [], []
        for sp, docs in ((title, titles), (body, bodies)):
            lengths = np.fromiter((max(d.length, 1) for d in docs[:top]), dtype=np.float64, count=top)
            head = sp.head(top)
            keys.append(sp.keys[head])
            tf.append(sp.counts[head] / lengths[sp.rows[head]])
        flat = np.concatenate(keys)
        if flat.shape[0] == 0:
            return none
        terms, where = np.unique(flat, return_inverse=True)
        weight = np.bincount(where, weights=np.concatenate(tf), minlength=terms.shape[0])
        pool = min(PRF_DF_DOCS, title.n)
        df_keys = np.concatenate([title.keys[title.head(pool)], body.keys[body.head(pool)]])
        at = np.searchsorted(terms, df_keys)
        at[at == terms.shape[0]] = 0
        df = np.bincount(at[terms[at] == df_keys], minlength=terms.shape[0])
        weight = weight * np.log1p(2 * pool / np.maximum(df, 1))
        weight[np.isin(terms, exclude)] = 0.0
        order = np.lexsort((terms, -weight))[: self._prf_terms]
        order = order[weight[order] > 0]
        if order.shape[0] == 0:
            return none
        chosen = np.sort(order)
        w = weight[chosen]
        return terms[chosen], w / w.sum()

    def _neighbour(self, cands: Sequence[Candidate], fused: Floats) -> dict[str, Floats]:
        """For each of the first `NEIGHBOUR_POOL` candidates that has a vector: its neighbourhood, itself and its
        `neighbours` most similar others among them (cosine of the item vectors), and the neighbourhood's `fused`
        scores' mean weighted by the similarity, and the best of them. Further down the list, where a candidate
        seldom reaches the page, both are NaN."""
        n = len(cands)
        out = {"neighbour_minmax": np.full(n, NAN), "neighbour_max_minmax": np.full(n, NAN)}
        pool = cands[:NEIGHBOUR_POOL]
        ids = [c.id for c in pool]
        if self._vectors is None or len(ids) < 2:
            return out
        try:
            found = candidate_vectors(pool, self._vectors)
        except Exception:  # the features go missing for this request; the model still scores the rest
            log.exception("reading the candidates' vectors failed; neighbour features are missing")
            return out
        have = [(i, v) for i, id_ in enumerate(ids) if (v := found.get(id_)) is not None]
        k = min(self._neighbours, len(have) - 1)
        if k < 1:
            return out
        rows = np.fromiter((i for i, _ in have), dtype=np.int64, count=len(have))
        x = np.stack([v for _, v in have]).astype(np.float32, copy=False)
        x /= np.maximum(np.sqrt(np.einsum("ij,ij->i", x, x)), 1e-12)[:, None]  # in place: no second copy
        sim = x @ x.T
        np.fill_diagonal(sim, -np.inf)  # the k nearest are chosen among the others
        kth = np.partition(sim, -k, axis=1)[:, -k][:, None]
        near = sim >= kth  # the k most similar (a tie at the k-th may add one)
        # The candidate itself belongs to its neighbourhood (similarity 1). Without it, the fused first and
        # its close neighbours (a film and its sequels) are told apart the wrong way round: each sequel's best
        # neighbour is the first (1.0), while the first's best is a weaker sequel.
        np.fill_diagonal(near, True)
        np.fill_diagonal(sim, 1.0)
        scores = fused[rows]
        weight = np.where(near, np.clip(sim, 1e-6, None), 0.0)  # a dissimilar neighbour counts ~nothing
        out["neighbour_minmax"][rows] = (weight @ scores) / weight.sum(axis=1)
        out["neighbour_max_minmax"][rows] = np.where(near, scores[None, :], -np.inf).max(axis=1)
        return out

    def _item(self, cands: Sequence[Candidate]) -> dict[str, Floats]:
        n = len(cands)
        now = self._clock()
        items = [c.item for c in cands]

        def column(values: Iterable[float]) -> Floats:
            return np.fromiter(values, dtype=np.float64, count=n)

        return {
            "popularity_log": column(
                math.log1p(max(i.popularity, 0.0)) if i.popularity is not None else NAN for i in items
            ),
            "rating": column(i.rating if i.rating is not None else NAN for i in items),
            "age_log_days": column(
                math.log1p(max((now - i.published_at).total_seconds() / 86400, 0.0))
                if i.published_at is not None
                else NAN
                for i in items
            ),
            "available": column(1.0 if i.available else 0.0 for i in items),
        }
