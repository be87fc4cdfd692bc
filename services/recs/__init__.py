"""Recommendations: interactions, candidate sources, a LambdaRank ranker, and the pipeline that serves them."""

from services.recs.interactions import (
    InMemoryInteractionStore,
    Interaction,
    InteractionStore,
    InteractionType,
    SQLiteInteractionStore,
    build_interaction_store,
)
from services.recs.models import (
    ArtefactBuilder,
    ArtefactStore,
    CoInteractionJob,
    InteractionLog,
    RecsArtefacts,
    build_artefact_store,
)
from services.recs.pipeline import RecommendationPipeline, RecommendationService
from services.recs.settings import RecsSettings
from services.recs.training import RankerTrainer, RecsRefreshJob
from services.recs.types import Mode, Recommendation, RecommendationRequest, RecommendationResult

__all__ = [
    "ArtefactBuilder",
    "ArtefactStore",
    "CoInteractionJob",
    "InMemoryInteractionStore",
    "Interaction",
    "InteractionLog",
    "InteractionStore",
    "InteractionType",
    "Mode",
    "RankerTrainer",
    "Recommendation",
    "RecommendationPipeline",
    "RecommendationRequest",
    "RecommendationResult",
    "RecommendationService",
    "RecsArtefacts",
    "RecsRefreshJob",
    "RecsSettings",
    "SQLiteInteractionStore",
    "build_artefact_store",
    "build_interaction_store",
]
