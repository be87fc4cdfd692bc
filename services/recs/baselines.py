"""Reference recommenders for the offline evaluation, on a user x item matrix built from per-user sequences.

Each `scores(users)` returns dense scores (users x items); the evaluation masks the training items.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

Matrix = npt.NDArray[np.float64]


class Baseline(Protocol):
    name: str

    def scores(self, users: npt.NDArray[np.int64]) -> Matrix: ...


def history_matrix(sequences: Sequence[Sequence[int]], n_items: int, half_life: float | None = None) -> sp.csr_matrix:
    """Users x items; 1 per interaction, or 0.5 ** (age / half_life) with age counted in items from the end."""
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for u, seq in enumerate(sequences):
        n = len(seq)
        rows.extend([u] * n)
        cols.extend(seq)
        if half_life is None:
            vals.extend([1.0] * n)
        else:
            vals.extend(np.power(0.5, np.arange(n - 1, -1, -1) / half_life).tolist())
    m = sp.csr_matrix((vals, (rows, cols)), shape=(len(sequences), n_items), dtype=np.float64)
    m.sum_duplicates()
    return m


class PopularityBaseline:
    name = "popularity"

    def __init__(self, x: sp.csr_matrix) -> None:
        self._pop = np.asarray((x > 0).sum(axis=0), dtype=np.float64).reshape(-1)

    def scores(self, users: npt.NDArray[np.int64]) -> Matrix:
        return np.tile(self._pop, (users.shape[0], 1))


class ItemKNNBaseline:
    """Item-based kNN: cosine between items' user sets, each item's k nearest neighbours, summed over history."""

    name = "item-kNN (cosine, k=50)"

    def __init__(self, x: sp.csr_matrix, k: int = 50) -> None:
        b = (x > 0).astype(np.float64)
        self._x = b.tocsr()
        gram = (b.T @ b).toarray()
        norms = np.sqrt(np.diag(gram))
        sim = gram / np.maximum(np.outer(norms, norms), 1e-12)
        np.fill_diagonal(sim, 0.0)
        drop = np.argsort(-sim, axis=1, kind="stable")[:, k:]
        np.put_along_axis(sim, drop, 0.0, axis=1)
        self._sim = sim

    def scores(self, users: npt.NDArray[np.int64]) -> Matrix:
        return np.asarray(self._x[users] @ self._sim)


class EaseBaseline:
    """EASE (closed form, Steck 2019) on the binary matrix; scored on `history` (binary or recency-weighted)."""

    def __init__(self, x: sp.csr_matrix, history: sp.csr_matrix, l2: float = 500.0, name: str = "EASE") -> None:
        b = (x > 0).astype(np.float64)
        gram = (b.T @ b).toarray()
        gram[np.diag_indices_from(gram)] += l2
        p = np.linalg.inv(gram)
        self._b = -p / np.diag(p)
        np.fill_diagonal(self._b, 0.0)
        self._history = history.tocsr()
        self.name = name

    def scores(self, users: npt.NDArray[np.int64]) -> Matrix:
        return np.asarray(self._history[users] @ self._b)


class TransitionBaseline:
    """First-order transitions: counts of item -> next item, summed over the last `last` items (decay**j)."""

    name = "transitions (first-order)"

    def __init__(self, sequences: Sequence[Sequence[int]], n_items: int, last: int = 5, decay: float = 0.5) -> None:
        src: list[int] = []
        dst: list[int] = []
        for seq in sequences:
            src.extend(seq[:-1])
            dst.extend(seq[1:])
        self._t = sp.csr_matrix((np.ones(len(src)), (src, dst)), shape=(n_items, n_items))
        self._t.sum_duplicates()
        self._pop = np.asarray((history_matrix(sequences, n_items) > 0).sum(axis=0), dtype=np.float64).reshape(-1)
        self._sequences = sequences
        self._last = last
        self._decay = decay

    def scores(self, users: npt.NDArray[np.int64]) -> Matrix:
        out = np.zeros((users.shape[0], self._t.shape[1]))
        for n, u in enumerate(users):
            recent = list(self._sequences[u])[-self._last :][::-1]
            if recent:
                w = np.power(self._decay, np.arange(len(recent)))
                out[n] = np.asarray(self._t[recent].T @ w).reshape(-1)
        return out + 1e-9 * self._pop  # popularity breaks ties (and ranks users without transitions)
