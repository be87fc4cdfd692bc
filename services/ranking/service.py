"""Wiring of the scoring stage: the registry, the served model, the scorer and the feature log, built from
settings once at startup; and the reload that swaps the served model without a restart."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from services.core.settings import CoreSettings
from services.ranking.feature_log import FeatureLogger, build_sink
from services.ranking.features import FeatureExtractor
from services.ranking.model import ModelCard, ModelError, ModelRefused, RankingModel
from services.ranking.registry import NONE, ModelRegistry, build_registry
from services.ranking.scorer import LambdaRankScorer, ModelSlot, RankingMetrics, SlotState
from services.ranking.settings import RankingSettings
from services.search.types import VectorLookup

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReloadResult:
    served: ModelCard | None
    previous: ModelCard | None
    why_none: str | None


class RankingService:
    def __init__(
        self,
        registry: ModelRegistry,
        scorer: LambdaRankScorer,
        feature_log: FeatureLogger | None,
        compile_dir: Path | None = None,
    ) -> None:
        self.registry = registry
        self.scorer = scorer
        self.feature_log = feature_log
        self._compile_dir = compile_dir
        self._reload_lock = threading.Lock()

    @property
    def slot(self) -> ModelSlot:
        return self.scorer.slot

    @property
    def metrics(self) -> RankingMetrics:
        return self.scorer.metrics

    def extractor_params(self) -> dict[str, int]:
        return self.scorer.extractor.params

    def check(self, model: RankingModel) -> None:
        model.check(self.scorer.extractor.feature_set, self.extractor_params())

    def load(self, name: str) -> RankingModel | None:
        """Resolve and check a model by name ('current', 'default', 'none' or an id); raises ModelError."""
        model = self.registry.resolve(name)
        if model is not None:
            self.check(model)
            if self._compile_dir is not None:
                model.compile(self._compile_dir)  # before it serves: a reload never waits on a compiler
        return model

    def reload(self, name: str) -> ReloadResult:
        """Load `name` and serve it. On any failure the served model stays and the error is raised."""
        with self._reload_lock:  # two reloads at once would race on `previous`
            try:
                model = self.load(name)
            except ModelError:
                self.metrics.reload_refused()
                raise
            previous = self.slot.swap(model, "model set to 'none'" if name == NONE else "no model")
            self.metrics.reloaded()
            log.info("ranking model now %s (was %s)", _id(model), _id(previous.model))
            return ReloadResult(
                model.card if model else None,
                previous.model.card if previous.model else None,
                None if model else self.slot.state.why_none,
            )

    def state(self) -> SlotState:
        return self.slot.state

    def close(self) -> None:
        if self.feature_log is not None:
            self.feature_log.close()


def _id(model: RankingModel | None) -> str:
    return model.model_id if model else "none (fused order)"


def build_ranking_service(
    core: CoreSettings, settings: RankingSettings, vectors: VectorLookup | None = None
) -> RankingService:
    """At startup a model that cannot be served does not stop the service: it falls back to the fused order
    and says why (explain, GET /admin/model, the log). `vectors` reads the candidates' stored vectors for the
    neighbour features (the engine's `get_vectors` on the served alias); without it, or with
    `settings.neighbour_vectors` off, they are missing."""
    registry = build_registry(core, settings)
    extractor = FeatureExtractor(
        prf_docs=settings.prf_docs,
        prf_terms=settings.prf_terms,
        cache_items=settings.feature_cache_items,
        vectors=vectors if settings.neighbour_vectors else None,
    )
    feature_log = None
    if settings.feature_log.enabled:
        feature_log = FeatureLogger(
            build_sink(core, settings.feature_log),
            flush_every_s=settings.feature_log.flush_every_s,
            max_queue=settings.feature_log.max_queue,
            sample_every=settings.feature_log.sample_every,
        )
    scorer = LambdaRankScorer(
        ModelSlot(None, "model set to 'none'"),
        extractor,
        window=settings.window,
        feature_log=feature_log,
        log_depth=settings.feature_log.depth,
    )
    compile_dir = core.data_dir / "compiled-models" if settings.compile_models else None
    service = RankingService(registry, scorer, feature_log, compile_dir)
    try:
        model = service.load(settings.model)
    except ModelError as exc:
        kind = "refused" if isinstance(exc, ModelRefused) else "not loaded"
        log.error("ranking model %r %s, serving the fused order: %s", settings.model, kind, exc)
        service.metrics.error(str(exc))
        service.slot.swap(None, f"model {settings.model!r} {kind}: {exc}")
    else:
        if model is not None:
            service.slot.swap(model)
    return service
