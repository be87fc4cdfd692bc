"""Settings of the scoring stage: a part of the API's one settings object (`ApiSettings.ranking`), so every knob
is also an environment variable, e.g. `TRAWL_RANKING__MODEL=none` or `TRAWL_RANKING__REGISTRY__KIND=s3`."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from services.core.settings import FeatureLogStore, ModelRegistryStore


class FeatureLogSettings(BaseModel):
    enabled: bool = True
    # local: JSONL files, one per day, under `<data_dir>/feature-log`; s3: one object per flushed batch under
    # `<bucket>/<prefix><day>/` (S3 cannot append).
    store: FeatureLogStore = Field(default_factory=FeatureLogStore)
    # Candidates logged per query, from the top of the scored list (what was served and just below it).
    depth: int = Field(50, ge=1, le=10_000)
    # Records are written by a background thread in batches; a full queue drops records (counted) rather
    # than slow a search down.
    flush_every_s: float = Field(1.0, gt=0)
    max_queue: int = Field(10_000, ge=1)
    # Log one query in this many. Turning a record into JSON costs ~3 ms of CPU (in the background thread,
    # but on the searches' GIL and cores); a busy service can sample. Every query is logged by default,
    # because an interaction can become a training row only when its query was logged.
    sample_every: int = Field(1, ge=1)


class RankingSettings(BaseModel):
    # Which model to serve at start: "current" (the registry's current model, else the shipped default),
    # "default" (the shipped one), "none" (the fused order), or a model id in the registry.
    model: str = "current"
    # local: `<data_dir>/models`; s3: `<bucket>/<prefix>`.
    registry: ModelRegistryStore = Field(default_factory=ModelRegistryStore)
    # The model re-orders the top `window` fused candidates; the rest follow in the fused order below them.
    window: int = Field(100, ge=1, le=10_000)
    # Pseudo-relevance feedback inside a request: feedback terms taken from the top fused candidates.
    prf_docs: int = Field(10, ge=0, le=100)
    prf_terms: int = Field(20, ge=0, le=200)
    # Items whose analysed texts the feature extractor keeps (about 4 KB each for short texts): the same items
    # come back query after query, and analysing them is most of the feature cost.
    feature_cache_items: int = Field(10_000, ge=0)
    # Use the scored candidates' vectors for the neighbour features: OpenSearch returns them with the hits (5-15
    # ms more per 200-hit leg at 100k items), the embedded engine copies them from its graph (~0.2 ms for 100);
    # only candidates without one cost an engine read. Off: those features are
    # missing, which the shipped model was not trained for: 0.440 instead of 0.471 nDCG@10 on Cranfield
    # (docs/evaluation.md); `trawl train` with it off trains a model that does not expect them.
    neighbour_vectors: bool = True
    feature_log: FeatureLogSettings = Field(default_factory=FeatureLogSettings)
    # Serve a loaded model's trees as native code (lleaves), cached under `<data_dir>/compiled-models`: about
    # ten times LightGBM's predict. A model is compiled only where that reproduces LightGBM's scores.
    compile_models: bool = True
    # Every API process polls the registry's record of the last admin reload at this interval and follows it,
    # so a reload sent to one process reaches all of them; 0 turns following off.
    follow_every_s: float = Field(5.0, ge=0)

    @field_validator("model")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name a model, or be 'current', 'default' or 'none'")
        return value.strip()
