"""Training: the ranker learns on the pipeline's own candidates, over a time-based split of the interactions;
and the periodic job that rebuilds the artefacts from the interaction store.

The split, per user: for c = 1..`cutoffs`, the user's c-th last interaction is a target, every user's last c
interactions are withheld, the source models are fitted on what remains and the pipeline proposes candidates
from the user's remaining history. A candidate's label is whether it is the target. Nothing at or after a
target is ever seen by the models that produce its features.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from services.core.engines.base import SearchEngine
from services.recs.interactions import (
    InMemoryInteractionStore,
    Interaction,
    InteractionStore,
    all_interactions,
    from_epoch,
)
from services.recs.models import ArtefactBuilder, ArtefactStore, InteractionLog, RecsArtefacts
from services.recs.pipeline import RecommendationPipeline
from services.recs.profile import EngineItemVectors, ItemVectors
from services.recs.ranking import FEATURE_NAMES, FusionRanker
from services.recs.settings import RecsSettings
from services.recs.sources import CandidateSource
from services.recs.types import RecommendationRequest

Progress = Callable[[str, int, int], None]  # (stage, done, total)
STORE_COUNT = "store_count"  # in the artefacts' info: how many interactions the store held when they were built
SourcesFactory = Callable[[RecsArtefacts], Sequence[CandidateSource]]


@dataclass(frozen=True)
class TrainingExamples:
    features: np.ndarray
    labels: np.ndarray
    groups: list[int]
    targets: int  # users asked for
    found: int  # of which the target was among the candidates


def _ordered(interactions: Sequence[Interaction]) -> list[Interaction]:
    """Time order, ties in the order given (a stable sort)."""
    return sorted(interactions, key=lambda i: i.epoch)


class RankerTrainer:
    """Interactions -> RecsArtefacts with a trained LambdaRank ranker. `engine`/`alias` give the vector source
    and the content features, as in the served pipeline."""

    def __init__(
        self,
        settings: RecsSettings | None = None,
        *,
        engine: SearchEngine | None = None,
        alias: str = "items",
        item_vectors: ItemVectors | None = None,
        sources: SourcesFactory | None = None,
        progress: Progress | None = None,
    ) -> None:
        self._settings = settings or RecsSettings()
        self._engine = engine
        self._alias = alias
        self._vectors = (
            item_vectors
            if item_vectors is not None
            else (EngineItemVectors(engine, alias) if engine is not None else None)
        )
        self._sources = sources
        self._progress = progress

    def _pipeline(self, store: InteractionStore, artefacts: RecsArtefacts) -> RecommendationPipeline:
        return RecommendationPipeline(
            store=store,
            artefacts=artefacts,
            settings=self._settings,
            engine=self._engine,
            alias=self._alias,
            item_vectors=self._vectors,
            sources=None if self._sources is None else self._sources(artefacts),
            ranker=FusionRanker(),
        )

    def examples(self, interactions: Sequence[Interaction], cutoff: int) -> TrainingExamples:
        """Training groups for one cutoff: each user's `cutoff`-th last taste interaction is the target."""
        s = self._settings
        weights = s.type_weights.model_dump()
        by_user: dict[str, list[Interaction]] = {}
        for i in _ordered(interactions):
            by_user.setdefault(i.user_id, []).append(i)
        kept: list[Interaction] = []
        targets: dict[str, Interaction] = {}
        for user, events in by_user.items():
            taste = [n for n, i in enumerate(events) if weights[i.type.value] > 0]
            if len(taste) < cutoff:
                continue
            cut = taste[-cutoff]
            kept.extend(events[:cut])
            if len(taste) - cutoff >= s.ranker.min_history:
                targets[user] = events[cut]
        kept = _ordered(kept)
        artefacts = ArtefactBuilder(s).run(InteractionLog.build(kept, s.type_weights))
        store = InMemoryInteractionStore(kept)
        pipeline = self._pipeline(store, artefacts)
        last_seen: dict[str, float] = {}
        for i in kept:
            last_seen[i.user_id] = i.epoch
        feats: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        groups: list[int] = []
        found = 0
        for done, (user, target) in enumerate(targets.items(), start=1):
            request = RecommendationRequest(user_id=user, k=10, at=from_epoch(last_seen[user]))
            cs = pipeline.candidates(request)
            if cs.context.known and cs.candidates:
                y = np.fromiter((c.item_id == target.item_id for c in cs.candidates), dtype=np.float64)
                if y.any():
                    found += 1
                    feats.append(cs.features.values)
                    labels.append(y)
                    groups.append(len(y))
            if self._progress is not None and (done % 50 == 0 or done == len(targets)):
                self._progress(f"ranker examples, cutoff {cutoff}", done, len(targets))
        width = len(FEATURE_NAMES)
        return TrainingExamples(
            features=np.vstack(feats) if feats else np.zeros((0, width)),
            labels=np.concatenate(labels) if labels else np.zeros(0),
            groups=groups,
            targets=len(targets),
            found=found,
        )

    def fit(self, examples: Sequence[TrainingExamples]) -> str | None:
        import lightgbm as lgb

        groups = [g for e in examples for g in e.groups]
        if len(groups) < 10:
            return None
        r = self._settings.ranker
        model = lgb.LGBMRanker(
            objective="lambdarank",
            n_estimators=r.n_estimators,
            learning_rate=r.learning_rate,
            num_leaves=r.num_leaves,
            min_child_samples=r.min_child_samples,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.8,
            lambdarank_truncation_level=20,
            random_state=r.seed,
            verbose=-1,
        )
        model.fit(
            np.vstack([e.features for e in examples]),
            np.concatenate([e.labels for e in examples]),
            group=groups,
        )
        return str(model.booster_.model_to_string())

    def run(self, interactions: Sequence[Interaction]) -> RecsArtefacts:
        s = self._settings
        examples = [self.examples(interactions, c) for c in range(1, s.ranker.cutoffs + 1)]
        if self._progress is not None:
            self._progress("fitting the ranker", 0, 1)
        model = self.fit(examples)
        artefacts = ArtefactBuilder(s).run(InteractionLog.build(_ordered(interactions), s.type_weights))
        artefacts.ranker = model
        artefacts.feature_names = list(FEATURE_NAMES)
        artefacts.info = {
            "ranker_groups": sum(len(e.groups) for e in examples),
            "ranker_rows": int(sum(e.features.shape[0] for e in examples)),
            "candidate_recall_by_cutoff": [round(e.found / max(e.targets, 1), 4) for e in examples],
        }
        return artefacts


class RecsRefreshJob:
    """The periodic worker task: read every interaction, rebuild the co-interaction table and the other source
    models, retrain the ranker (or keep the current one), and publish the new artefacts atomically."""

    def __init__(
        self,
        store: InteractionStore,
        artefacts: ArtefactStore,
        settings: RecsSettings | None = None,
        *,
        engine: SearchEngine | None = None,
        alias: str = "items",
        progress: Progress | None = None,
    ) -> None:
        self._store = store
        self._artefacts = artefacts
        self._settings = settings or RecsSettings()
        self._engine = engine
        self._alias = alias
        self._progress = progress  # told of the ranker's training stages (a command line shows them)

    def run_if_changed(self, *, train_ranker: bool = True) -> RecsArtefacts | None:
        """What the periodic task calls: run unless the store holds exactly the interactions the live
        artefacts were built from (or none at all); None when skipped."""
        stored = self._store.count()
        if stored == 0 or stored == self._live_source_count():
            return None
        return self.run(train_ranker=train_ranker, store_count=stored)

    def _live_source_count(self) -> int | None:
        live = self._artefacts.load_info()
        value = None if live is None else live.get(STORE_COUNT)
        return int(value) if value is not None else None

    def run(
        self, *, train_ranker: bool = True, since: datetime | None = None, store_count: int | None = None
    ) -> RecsArtefacts:
        # Counted before the scan: an interaction recorded meanwhile makes the next periodic run rebuild again.
        counted = self._store.count() if store_count is None else store_count
        interactions = list(all_interactions(self._store, since=since))
        if train_ranker:
            trainer = RankerTrainer(self._settings, engine=self._engine, alias=self._alias, progress=self._progress)
            built = trainer.run(interactions)
        else:
            built = ArtefactBuilder(self._settings).run(InteractionLog.build(interactions, self._settings.type_weights))
            previous = self._artefacts.load()
            if previous is not None and previous.ranker is not None and previous.feature_names == list(FEATURE_NAMES):
                built.ranker, built.feature_names = previous.ranker, previous.feature_names
        built.built_at = datetime.now(UTC)
        if since is None:
            built.info[STORE_COUNT] = counted
        self._artefacts.save(built)
        return built
