"""Term proximity of the query's terms in each candidate's field, for all candidates at once (no per-candidate
Python loop): a field's terms of every candidate are laid end to end, the query's terms kept with their
positions, and neighbouring occurrences of two different query terms in the same candidate give distances.

Why: a document where "boundary" and "layer" sit next to each other is about the boundary layer; one that
mentions both far apart may not be. Bigram features see only adjacency; these see a window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.ranking.text import AnalysedText, Ids

Floats = npt.NDArray[np.float64]

# Occurrences of two different query terms at most this many positions apart count as close.
CLOSE = 4


@dataclass(frozen=True, slots=True)
class Proximity:
    """Per candidate: 1 / the smallest distance between two different query terms (0: fewer than two of them
    in the field), and log1p of how many neighbouring occurrences of two different query terms are close."""

    min_distance_inv: Floats
    close_pairs_log: Floats


def proximity(docs: Sequence[AnalysedText], query_terms: Ids) -> Proximity:
    n = len(docs)
    inv, close = np.zeros(n), np.zeros(n)
    if n == 0 or np.unique(query_terms).shape[0] < 2:
        return Proximity(inv, close)
    lengths = np.fromiter((d.length for d in docs), dtype=np.int64, count=n)
    if lengths.sum() == 0:
        return Proximity(inv, close)
    terms = np.concatenate([d.terms for d in docs])
    rows = np.repeat(np.arange(n), lengths)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    keep = np.isin(terms, query_terms)
    t, r = terms[keep], rows[keep]
    p = (np.arange(terms.shape[0]) - starts)[keep]
    if t.shape[0] < 2:
        return Proximity(inv, close)
    # neighbours in the filtered sequence: the nearest occurrence of another query term is always among them
    pair = (r[1:] == r[:-1]) & (t[1:] != t[:-1])
    dist = (p[1:] - p[:-1])[pair]
    at = r[1:][pair]
    best = np.full(n, np.inf)
    np.minimum.at(best, at, dist)
    found = np.isfinite(best)
    inv[found] = 1.0 / best[found]
    close = np.log1p(np.bincount(at[dist <= CLOSE], minlength=n).astype(np.float64))
    return Proximity(inv, close)
