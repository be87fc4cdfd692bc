"""The recommendation pipeline: what POST /v1/recommendations runs, and what the evaluation measures.

    request -> ProfileBuilder -> ContextEncoder (+ UserVectorBuilder) -> sources -> CandidateMerger
            -> FeatureBuilder -> ranker (LambdaRank, or RRF while none is trained) -> NegativeDemoter
            -> CatalogGuard -> CatalogFill -> RecommendationResult

A request's filter holds for every item returned: the vector source passes it into the engine's k-NN search,
the other sources keep their best items that pass it, and the guard checks the final list.

Cold start: when the interaction models know none of the profile's items, the answer is the nearest items by
content (the vector source), then trending items; with no profile at all, trending items. Any answer still
short of k (before the first refresh there is no trending; deletions or a filter can leave the sources short)
is filled with the catalog's most popular items (CatalogFill).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from services.core.engines.base import SearchEngine
from services.core.errors import ValidationError
from services.core.filters import Filter, HiddenItems, Or, Terms, excluding
from services.recs.catalog import CatalogView
from services.recs.fill import POPULAR, CatalogFill
from services.recs.interactions import InteractionStore
from services.recs.models import ArtefactStore, RecsArtefacts, empty_artefacts
from services.recs.profile import ContextEncoder, EngineItemVectors, ItemVectors, ProfileBuilder, UserVectorBuilder
from services.recs.ranking import (
    FEATURE_NAMES,
    CandidateMerger,
    CatalogGuard,
    FeatureBuilder,
    FusionRanker,
    LambdaRankRanker,
    NegativeDemoter,
    Ranker,
)
from services.recs.settings import RecsSettings
from services.recs.sources import (
    TRENDING,
    VECTOR,
    CandidateSource,
    CoInteractionSource,
    EaseSource,
    TransitionSource,
    TrendingSource,
    VectorSource,
)
from services.recs.types import (
    MAX_SEEDS,
    Candidate,
    CandidateSet,
    FeatureMatrix,
    Mode,
    RankedCandidate,
    Recommendation,
    RecommendationRequest,
    RecommendationResult,
    SourceResult,
)

log = logging.getLogger(__name__)
# How long a published version that failed to load is left before it is fetched again.
FAILED_VERSION_RETRY_S = 300.0


def default_sources(
    artefacts: RecsArtefacts, settings: RecsSettings, engine: SearchEngine | None, alias: str
) -> list[CandidateSource]:
    sources: list[CandidateSource] = [
        EaseSource(artefacts, settings),
        CoInteractionSource(artefacts, settings),
        TransitionSource(artefacts),
    ]
    if engine is not None:
        sources.append(VectorSource(engine, alias))
    sources.append(TrendingSource(artefacts, settings))
    return sources


class RecommendationPipeline:
    """One object per artefacts version; thread-safe for concurrent requests (stages hold no request state)."""

    def __init__(
        self,
        *,
        store: InteractionStore,
        artefacts: RecsArtefacts,
        settings: RecsSettings | None = None,
        engine: SearchEngine | None = None,
        alias: str = "items",
        item_vectors: ItemVectors | None = None,
        sources: Sequence[CandidateSource] | None = None,
        ranker: Ranker | None = None,
    ) -> None:
        self.settings = settings = settings or RecsSettings()
        self.artefacts = artefacts
        vectors = (
            item_vectors
            if item_vectors is not None
            else (EngineItemVectors(engine, alias) if engine is not None else None)
        )
        self.profiles = ProfileBuilder(store, settings)
        self.encoder = ContextEncoder(artefacts, UserVectorBuilder(vectors, settings), settings)
        self.sources = list(sources) if sources is not None else default_sources(artefacts, settings, engine, alias)
        self.merger = CandidateMerger(artefacts)
        self.features = FeatureBuilder(artefacts, vectors)
        if ranker is None:
            trained = artefacts.ranker is not None and tuple(artefacts.feature_names) == FEATURE_NAMES
            if artefacts.ranker is not None and not trained:
                log.warning("the artefacts' ranker was trained on other features: ordering by fusion until retrained")
            ranker = LambdaRankRanker(artefacts.ranker or "", artefacts.feature_names) if trained else FusionRanker()
        self.ranker = ranker
        self.demoter = NegativeDemoter(artefacts, vectors, settings)
        self.guard = CatalogGuard(engine, alias)
        self.fill = CatalogFill(engine if settings.fill_by else None, alias, settings.fill_by or "")
        self._engine = engine
        self._alias = alias

    def catalog(self, request: RecommendationRequest) -> CatalogView | None:
        """The request's view of the catalog, shared by the sources (its filter) and the guard."""
        if self._engine is None:
            if request.filter is not None:
                raise ValidationError("filter", "cannot be applied: this pipeline has no catalog to read items from")
            return None
        return CatalogView(self._engine, self._alias, request.filter, scan_limit=self.settings.filter_scan_limit)

    def candidates(
        self, request: RecommendationRequest, *, with_features: bool = True, catalog: CatalogView | None = None
    ) -> CandidateSet:
        """The candidate stage alone (the ranker's trainer calls this too, so it learns on what it will rank)."""
        profile = self.profiles.run(request)
        context = self.encoder.run(profile, catalog if catalog is not None else self.catalog(request))
        depth = max(self.settings.source_depth, 2 * request.k)
        results = tuple(source.run(context, k=depth) for source in self.sources)
        candidates = self.merger.run(results, context)
        if with_features and context.known:
            features = self.features.run(context, candidates, results)
        else:  # cold start is not ranked on features
            features = FeatureMatrix(self.features.names, np.zeros((0, len(self.features.names))))
        return CandidateSet(context, results, candidates, features)

    def run(self, request: RecommendationRequest) -> RecommendationResult:
        catalog = self.catalog(request)
        cs = self.candidates(request, with_features=True, catalog=catalog)
        context = cs.context
        if context.known:
            ranked = self.demoter.run(self.ranker.run(cs.candidates, cs.features), context)
            mode, ranker_name = context.profile.mode, self.ranker.name
        else:
            ranked, mode = _cold_start(cs.candidates, cs.results)
            ranker_name = "fallback"
        final = self.fill.run(self.guard.run(ranked, request.k, catalog), request.k, context)
        if final and not context.known and all(POPULAR in r.candidate.sources for r in final):
            mode = Mode.POPULAR
        asked = tuple(dict.fromkeys((*request.seed_item_ids, *request.negative_item_ids)))
        unknown: tuple[str, ...] = ()
        if catalog is not None and asked:  # read through the request's view: often read by the sources already
            held = catalog.items(asked)
            unknown = tuple(i for i in asked if i not in held)
        return RecommendationResult(
            items=[Recommendation(r.candidate.item_id, r.score, dict(r.candidate.sources)) for r in final],
            mode=mode,
            ranker=ranker_name,
            candidates=len(cs.candidates),
            unknown_item_ids=unknown,
        )


def without_hidden_items(request: RecommendationRequest, hidden: Filter | None) -> RecommendationRequest:
    """The request with what hide rules take out: hidden ids join the excluded ids (a set every source
    checks), hidden targets join the filter (which sends the sources through their slower filtered path)."""
    if hidden is None:
        return request
    parts = hidden.filters if isinstance(hidden, Or) else (hidden,)
    ids = [v for p in parts if isinstance(p, Terms) and p.field == "id" for v in p.values]
    rest = [p for p in parts if not (isinstance(p, Terms) and p.field == "id")]
    if len(request.exclude_item_ids) + len(ids) > MAX_SEEDS:  # more than a request may exclude: as a filter
        ids, rest = [], list(parts)
    hide = None if not rest else rest[0] if len(rest) == 1 else Or(tuple(rest))
    return replace(
        request,
        exclude_item_ids=(*request.exclude_item_ids, *map(str, ids)),
        filter=excluding(request.filter, hide),
    )


def _cold_start(candidates: list[Candidate], results: Sequence[SourceResult]) -> tuple[list[RankedCandidate], Mode]:
    """Content neighbours first, then trending, each in its own order."""
    by_id = {c.item_id: c for c in candidates}
    ordered: list[RankedCandidate] = []
    seen: set[str] = set()
    has_content = False
    for name in (VECTOR, TRENDING):
        for result in results:
            if result.name != name:
                continue
            for item in result.item_ids:
                if item in by_id and item not in seen:
                    seen.add(item)
                    has_content |= name == VECTOR
                    ordered.append(RankedCandidate(by_id[item], float(-len(ordered))))
    return ordered, (Mode.CONTENT if has_content else Mode.TRENDING)


class RecommendationService:
    """What the API holds: the pipeline over the live artefacts, swapped when the periodic job publishes new
    ones. The published version (one small read) is checked every `reload_every_s` (default: the settings'):
    by a background thread once `follow` started it (the API), else by the request that finds the last check
    that old. Before the first job has run, it serves cold start only."""

    def __init__(
        self,
        *,
        store: InteractionStore,
        artefacts: ArtefactStore,
        settings: RecsSettings | None = None,
        engine: SearchEngine | None = None,
        alias: str = "items",
        reload_every_s: float | None = None,
        hidden: HiddenItems | None = None,
    ) -> None:
        self._store = store
        self._hidden = hidden
        self._artefacts = artefacts
        self._settings = settings or RecsSettings()
        self._engine = engine
        self._alias = alias
        self._reload_every_s = self._settings.reload_every_s if reload_every_s is None else reload_every_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._follower: threading.Thread | None = None
        self._version: str | None = None
        self._failed: tuple[str, float] | None = None  # a version that failed to load, and when to try again
        self._checked = -float("inf")
        self._pipeline = self._build(empty_artefacts())
        self.reload()

    def _build(self, artefacts: RecsArtefacts) -> RecommendationPipeline:
        return RecommendationPipeline(
            store=self._store, artefacts=artefacts, settings=self._settings, engine=self._engine, alias=self._alias
        )

    @property
    def version(self) -> str | None:
        """The artefacts version served (None: none published yet)."""
        return self._version

    def reload(self, *, wait: bool = True) -> bool:
        """Load the live artefacts if they changed; True when the pipeline was swapped. `wait=False` returns
        at once when another thread is loading: requests keep being served while one of them loads."""
        if not self._lock.acquire(blocking=wait):
            return False
        try:
            return self._reload()
        finally:
            self._lock.release()

    def _reload(self) -> bool:
        """`reload` with the lock held."""
        self._checked = now = time.monotonic()
        current: str | None = None
        try:
            current = self._artefacts.current()
            if current is None or current == self._version:
                return False
            if self._failed is not None and self._failed[0] == current and now < self._failed[1]:
                return False
            loaded = self._artefacts.load()
            if loaded is None:
                return False
            pipeline = self._build(loaded)  # a ranker this LightGBM cannot read fails here, not in requests
        except Exception:  # pruned meanwhile, unreadable, or the store (a bucket) unreachable: keep serving
            # A version that failed to load is fetched again only after a while (it may be large, and
            # broken for good), at once when the pointer moves on.
            if current is not None:
                self._failed = (current, now + FAILED_VERSION_RETRY_S)
            log.warning("could not load the recommendation artefacts %s", current, exc_info=True)
            return False
        self._pipeline = pipeline
        self._version = current
        return True

    def follow(self) -> None:
        """Check from a background thread from now on: no request then waits for a check or pays for a
        download (a bucket's round trip, a version of 100 MB)."""
        if self._follower is None and self._reload_every_s > 0:
            self._follower = threading.Thread(target=self._follow, name="recs-artefacts-follower", daemon=True)
            self._follower.start()

    def _follow(self) -> None:
        while not self._stop.wait(self._reload_every_s):
            self.reload()  # it logs and survives its own failures

    def close(self) -> None:
        self._stop.set()
        if self._follower is not None:
            self._follower.join(timeout=5)

    def run(self, request: RecommendationRequest) -> RecommendationResult:
        if self._follower is None and time.monotonic() - self._checked >= self._reload_every_s:
            self.reload(wait=False)
        if self._hidden is not None and self._engine is not None:  # what hide rules take out, from every source
            request = without_hidden_items(request, self._hidden.hidden(None, request.filter))
        return self._pipeline.run(request)
