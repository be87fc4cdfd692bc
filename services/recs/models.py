"""What the periodic job computes from interactions, and how it is kept on disk.

`InteractionLog` is a columnar snapshot of the interactions. One job class per model turns it into an artefact:
co-interaction neighbours, sequential transitions, EASE weights, popularity and trending statistics. They share
one item vocabulary inside `RecsArtefacts`, which `ArtefactStore` writes as a new version and points at
atomically, so that a reader sees the old or the new artefacts, never a mix.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from services.core.settings import CoreSettings
from services.core.storage import BlobStore, LocalBlobStore, blob_store_for
from services.recs.interactions import Interaction
from services.recs.settings import CoInteractionSettings, EaseSettings, RecsSettings, TransitionSettings, TypeWeights

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
DAY = 86_400.0
ARTEFACT_FORMAT = 1
CURRENT = "current.json"


class ItemIndex:
    """Item ids <-> rows of every model matrix."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids: list[str] = list(ids)
        self.pos: dict[str, int] = {item: n for n, item in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, ids: Iterable[str]) -> IntArray:
        """Rows of the ids, -1 for ids the models have never seen."""
        get = self.pos.get
        return np.fromiter((get(i, -1) for i in ids), dtype=np.int64)


@dataclass(frozen=True)
class InteractionLog:
    """Interactions that carry taste (type weight > 0), as arrays in time order (ties in recording order)."""

    items: ItemIndex
    users: list[str]
    user: IntArray
    item: IntArray
    ts: npt.NDArray[np.float64]
    weight: FloatArray
    value: FloatArray  # NaN where the interaction has no value

    @classmethod
    def build(cls, interactions: Iterable[Interaction], type_weights: TypeWeights) -> InteractionLog:
        weights = type_weights.model_dump()
        item_pos: dict[str, int] = {}
        user_pos: dict[str, int] = {}
        u: list[int] = []
        it: list[int] = []
        ts: list[float] = []
        w: list[float] = []
        val: list[float] = []
        for i in interactions:
            weight = weights[i.type.value]
            if weight <= 0:
                continue
            u.append(user_pos.setdefault(i.user_id, len(user_pos)))
            it.append(item_pos.setdefault(i.item_id, len(item_pos)))
            ts.append(i.epoch)
            w.append(weight)
            val.append(np.nan if i.value is None else i.value)
        ts_arr = np.asarray(ts, dtype=np.float64)
        order = np.argsort(ts_arr, kind="stable")  # ties keep the order they came in
        return cls(
            items=ItemIndex(list(item_pos)),
            users=list(user_pos),
            user=np.asarray(u, dtype=np.int64)[order],
            item=np.asarray(it, dtype=np.int64)[order],
            ts=ts_arr[order],
            weight=np.asarray(w, dtype=np.float32)[order],
            value=np.asarray(val, dtype=np.float32)[order],
        )

    def __len__(self) -> int:
        return int(self.item.shape[0])

    def sequences(self) -> list[IntArray]:
        """Per user (in `users` order): the rows of the log of that user, in time order."""
        order = np.argsort(self.user, kind="stable")
        bounds = np.searchsorted(self.user[order], np.arange(len(self.users) + 1))
        return [order[bounds[n] : bounds[n + 1]] for n in range(len(self.users))]

    def engagement_matrix(self) -> sp.csr_matrix:
        """Users x items, 1 where the user engaged with the item."""
        m = sp.csr_matrix(
            (np.ones(len(self), dtype=np.float32), (self.user, self.item)),
            shape=(len(self.users), len(self.items)),
        )
        m.data[:] = 1.0  # duplicates were summed
        return m


def top_k_rows(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the k largest entries of each row (ties: lower column first)."""
    matrix = matrix.tocsr()
    matrix.sort_indices()
    indptr = matrix.indptr
    keep = np.zeros(matrix.nnz, dtype=bool)
    for row in range(matrix.shape[0]):
        start, end = indptr[row], indptr[row + 1]
        if end - start <= k:
            keep[start:end] = True
        else:
            chosen = np.argsort(-matrix.data[start:end], kind="stable")[:k]
            keep[start + chosen] = True
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(indptr))[keep]
    out = sp.csr_matrix((matrix.data[keep], (rows, matrix.indices[keep])), shape=matrix.shape, dtype=np.float32)
    out.sort_indices()
    return out


class CoInteractionJob:
    """'People who engaged with X also engaged with Y': cosine between items' user sets, top neighbours per item."""

    def __init__(self, settings: CoInteractionSettings) -> None:
        self._settings = settings

    def run(self, log: InteractionLog) -> sp.csr_matrix:
        x = log.engagement_matrix()
        co = (x.T @ x).tocsr().astype(np.float32)
        counts = co.diagonal().copy()
        co.setdiag(0.0)
        co.eliminate_zeros()
        if self._settings.min_common > 1:
            co.data[co.data < self._settings.min_common] = 0.0
            co.eliminate_zeros()
        norms = np.sqrt(np.maximum(counts, 1e-12)).astype(np.float32)
        coo = co.tocoo()
        coo.data = coo.data / (norms[coo.row] * norms[coo.col])
        return top_k_rows(coo.tocsr(), self._settings.neighbours)


class TransitionJob:
    """What comes next: for each item, the items users engaged with within the next `window` steps (1/distance)."""

    def __init__(self, settings: TransitionSettings) -> None:
        self._settings = settings

    def run(self, log: InteractionLog) -> sp.csr_matrix:
        rows: list[IntArray] = []
        cols: list[IntArray] = []
        vals: list[FloatArray] = []
        for seq in log.sequences():
            items = log.item[seq]
            for step in range(1, self._settings.window + 1):
                if len(items) <= step:
                    break
                rows.append(items[:-step])
                cols.append(items[step:])
                vals.append(np.full(len(items) - step, 1.0 / step, dtype=np.float32))
        n = len(log.items)
        if not rows:
            return sp.csr_matrix((n, n), dtype=np.float32)
        r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
        keep = r != c
        t = sp.csr_matrix((v[keep], (r[keep], c[keep])), shape=(n, n), dtype=np.float32)
        t.sum_duplicates()
        return top_k_rows(t, self._settings.neighbours)


class EaseJob:
    """EASE (Steck 2019): closed-form item-item weights. Dense, so only built for catalogs up to `max_items`."""

    def __init__(self, settings: EaseSettings) -> None:
        self._settings = settings

    def run(self, log: InteractionLog) -> FloatArray | None:
        n = len(log.items)
        if n == 0 or n > self._settings.max_items:
            return None
        x = log.engagement_matrix()
        gram = (x.T @ x).toarray().astype(np.float64)
        gram[np.diag_indices(n)] += self._settings.l2
        p = np.linalg.inv(gram)
        b = -p / np.diag(p)
        np.fill_diagonal(b, 0.0)
        return np.ascontiguousarray(b, dtype=np.float32)


@dataclass(frozen=True)
class PopularityStats:
    """Per item: users engaged, first time seen, smoothed mean value; and the time line for trending windows."""

    users: FloatArray
    first_seen: npt.NDArray[np.float64]
    mean_value: FloatArray
    timeline_ts: npt.NDArray[np.float64]
    timeline_item: IntArray

    def window_share(self, at: float, days: float) -> FloatArray:
        """Each item's share of the interactions in (at - days, at]."""
        lo = int(np.searchsorted(self.timeline_ts, at - days * DAY, side="right"))
        hi = int(np.searchsorted(self.timeline_ts, at, side="right"))
        counts = np.bincount(self.timeline_item[lo:hi], minlength=self.users.shape[0]).astype(np.float32)
        return (counts / max(hi - lo, 1)).astype(np.float32)


class PopularityJob:
    def __init__(self, prior_strength: float = 5.0) -> None:
        self._prior = prior_strength

    def run(self, log: InteractionLog) -> PopularityStats:
        n = len(log.items)
        users = np.asarray(log.engagement_matrix().sum(axis=0), dtype=np.float32).reshape(-1)
        first = np.full(n, np.inf)
        np.minimum.at(first, log.item, log.ts)
        has = ~np.isnan(log.value)
        sums = np.bincount(log.item[has], weights=log.value[has], minlength=n)
        counts = np.bincount(log.item[has], minlength=n)
        prior = float(log.value[has].mean()) if has.any() else 0.0
        mean = (sums + prior * self._prior) / (counts + self._prior)
        return PopularityStats(
            users=users,
            first_seen=first,
            mean_value=mean.astype(np.float32),
            timeline_ts=log.ts.copy(),
            timeline_item=log.item.copy(),
        )


@dataclass
class RecsArtefacts:
    """Everything the pipeline reads, trained together on one snapshot of interactions."""

    items: ItemIndex
    co_interaction: sp.csr_matrix
    transitions: sp.csr_matrix
    ease: FloatArray | None
    popularity: PopularityStats
    ranker: str | None = None  # a LightGBM model, as text
    feature_names: list[str] = field(default_factory=list)
    built_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    n_interactions: int = 0
    info: dict[str, Any] = field(default_factory=dict)


def empty_artefacts() -> RecsArtefacts:
    """Artefacts of no interactions: what a service serves before the first job has run (cold start only)."""
    empty = sp.csr_matrix((0, 0), dtype=np.float32)
    return RecsArtefacts(
        items=ItemIndex([]),
        co_interaction=empty,
        transitions=empty.copy(),
        ease=None,
        popularity=PopularityStats(
            users=np.zeros(0, dtype=np.float32),
            first_seen=np.zeros(0),
            mean_value=np.zeros(0, dtype=np.float32),
            timeline_ts=np.zeros(0),
            timeline_item=np.zeros(0, dtype=np.int64),
        ),
    )


class ArtefactBuilder:
    """The periodic job's model stage: every source model from one interaction log (the ranker is trained apart)."""

    def __init__(self, settings: RecsSettings) -> None:
        self._settings = settings

    def run(self, log: InteractionLog) -> RecsArtefacts:
        return RecsArtefacts(
            items=log.items,
            co_interaction=CoInteractionJob(self._settings.co_interaction).run(log),
            transitions=TransitionJob(self._settings.transitions).run(log),
            ease=EaseJob(self._settings.ease).run(log),
            popularity=PopularityJob().run(log),
            n_interactions=len(log),
        )


def _sparse_arrays(prefix: str, m: sp.csr_matrix) -> dict[str, npt.NDArray[Any]]:
    return {f"{prefix}_data": m.data, f"{prefix}_indices": m.indices, f"{prefix}_indptr": m.indptr}


def _sparse(prefix: str, arrays: Any, n: int) -> sp.csr_matrix:
    return sp.csr_matrix(
        (arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"], arrays[f"{prefix}_indptr"]), shape=(n, n)
    )


class ArtefactStore:
    """Versions of the artefacts in a blob store (a folder, or an S3 bucket that the hosts of a fleet share):
    `<version>/` holds one version's files, `current.json` names the live one. A version is written whole
    before the pointer moves, and the pointer is one object replaced at once, so a reader sees the old or the
    new artefacts, never a mix. The `keep` newest versions stay (a reader may still be loading the previous)."""

    def __init__(self, store: BlobStore, keep: int = 2) -> None:
        self._store = store
        self._keep = keep

    @classmethod
    def local(cls, root: Path, keep: int = 2) -> ArtefactStore:
        return cls(LocalBlobStore(root), keep)

    def save(self, artefacts: RecsArtefacts) -> str:
        """Write a new version and make it the live one; returns its name."""
        name = f"v{artefacts.built_at.strftime('%Y%m%dT%H%M%S%f')}-{os.getpid()}"
        pop = artefacts.popularity
        arrays: dict[str, npt.NDArray[Any]] = {
            **_sparse_arrays("co", artefacts.co_interaction),
            **_sparse_arrays("tr", artefacts.transitions),
            "pop_users": pop.users,
            "pop_first_seen": pop.first_seen,
            "pop_mean_value": pop.mean_value,
            "pop_timeline_ts": pop.timeline_ts,
            "pop_timeline_item": pop.timeline_item,
        }
        if artefacts.ease is not None:
            arrays["ease"] = artefacts.ease
        buffer = io.BytesIO()
        savez: Any = np.savez  # its stubs do not take a mapping of arrays
        savez(buffer, **arrays)
        self._store.put(f"{name}/arrays.npz", buffer.getvalue())
        self._store.put(f"{name}/items.json", json.dumps(artefacts.items.ids).encode())
        if artefacts.ranker is not None:
            self._store.put(f"{name}/ranker.txt", artefacts.ranker.encode())
        manifest = {
            "format": ARTEFACT_FORMAT,
            "built_at": artefacts.built_at.isoformat(),
            "n_interactions": artefacts.n_interactions,
            "feature_names": artefacts.feature_names,
            "info": artefacts.info,
            "ranker": artefacts.ranker is not None,
        }
        self._store.put(f"{name}/manifest.json", json.dumps(manifest).encode())  # last: the version is whole
        self._store.put(CURRENT, json.dumps({"version": name}).encode())
        self._prune(name)
        return name

    def versions(self) -> list[str]:
        """The versions held, oldest first (names sort by build time)."""
        return sorted({key.split("/", 1)[0] for key in self._store.list("v") if key.endswith("/manifest.json")})

    def _prune(self, live: str) -> None:
        older = [v for v in self.versions() if v != live]
        for old in older[: max(len(older) - (self._keep - 1), 0)]:
            # the manifest last: a prune cut short leaves a version that is still listed, and pruned next time
            keys = sorted(self._store.list(f"{old}/"), key=lambda k: k.endswith("/manifest.json"))
            for key in keys:
                self._store.delete(key)

    def current(self) -> str | None:
        raw = self._store.get(CURRENT)
        return None if raw is None else str(json.loads(raw)["version"])

    def _manifest(self, name: str) -> dict[str, Any] | None:
        raw = self._store.get(f"{name}/manifest.json")
        return None if raw is None else dict(json.loads(raw))

    def load_info(self) -> dict[str, Any] | None:
        """The live artefacts' `info` without loading their arrays (None when none are published)."""
        name = self.current()
        manifest = None if name is None else self._manifest(name)  # None: pruned by a newer publication meanwhile
        return None if manifest is None else dict(manifest.get("info", {}))

    def load(self) -> RecsArtefacts | None:
        name = self.current()
        if name is None:
            return None
        # the small files first: a version that misses one costs no download of the arrays
        manifest = self._manifest(name)
        items_raw = self._store.get(f"{name}/items.json")
        if manifest is None or items_raw is None:
            raise FileNotFoundError(f"recommendation artefacts {name}: a file is missing (pruned meanwhile?)")
        ranker_raw = self._store.get(f"{name}/ranker.txt") if manifest.get("ranker", True) else None
        if ranker_raw is None and manifest.get("ranker"):  # never serve a version without the ranker it has
            raise FileNotFoundError(f"recommendation artefacts {name}: ranker.txt is missing (pruned meanwhile?)")
        arrays_raw = self._store.get(f"{name}/arrays.npz")
        if arrays_raw is None:
            raise FileNotFoundError(f"recommendation artefacts {name}: arrays.npz is missing (pruned meanwhile?)")
        items = ItemIndex(json.loads(items_raw))
        n = len(items)
        with np.load(io.BytesIO(arrays_raw)) as arrays:
            popularity = PopularityStats(
                users=arrays["pop_users"],
                first_seen=arrays["pop_first_seen"],
                mean_value=arrays["pop_mean_value"],
                timeline_ts=arrays["pop_timeline_ts"],
                timeline_item=arrays["pop_timeline_item"],
            )
            return RecsArtefacts(
                items=items,
                co_interaction=_sparse("co", arrays, n),
                transitions=_sparse("tr", arrays, n),
                ease=arrays.get("ease"),
                popularity=popularity,
                ranker=None if ranker_raw is None else ranker_raw.decode(),
                feature_names=list(manifest["feature_names"]),
                built_at=datetime.fromisoformat(manifest["built_at"]),
                n_interactions=int(manifest["n_interactions"]),
                info=dict(manifest.get("info", {})),
            )


def build_artefact_store(core: CoreSettings, recs: RecsSettings, *, publisher: bool = False) -> ArtefactStore:
    """Where the periodic job publishes and every API process reads: a bucket when `recs.artefacts.kind` is
    s3 (hosts that share no disk), else the folder `recs.artefacts_path`. Only the `publisher` (the job)
    creates the bucket: a reader starts without it, serving cold start until artefacts are published."""
    return ArtefactStore(blob_store_for(recs.artefacts, recs.artefacts_path(core.data_dir), create_bucket=publisher))
