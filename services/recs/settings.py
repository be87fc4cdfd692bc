"""Settings of the recommendation pipeline. A deployable nests `RecsSettings` in its own settings object."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from services.core.settings import RecsArtefactsStore


class TypeWeights(BaseModel):
    """How much each kind of interaction says about a user's taste. Zero leaves the type out of profiles."""

    impression: float = 0.0
    click: float = 1.0
    add_to_cart: float = 2.0
    purchase: float = 3.0
    rating: float = 1.0


class CoInteractionSettings(BaseModel):
    neighbours: int = Field(default=200, ge=1, le=5000)  # neighbours kept per item in the table
    min_common: int = Field(default=1, ge=1)  # pairs seen together by fewer users are dropped


class TransitionSettings(BaseModel):
    window: int = Field(default=3, ge=1, le=20)  # the next `window` items after an item count, weighted 1/distance
    neighbours: int = Field(default=200, ge=1, le=5000)


class EaseSettings(BaseModel):
    l2: float = Field(default=500.0, gt=0)
    # EASE holds a dense item x item matrix: above this many items it is not built (the source is left out).
    max_items: int = Field(default=5000, ge=0)


class RankerSettings(BaseModel):
    # Each user's c-th last interaction, c = 1..cutoffs, is a training target, with every user's last c
    # interactions withheld from the models the features come from (a time-based split per user).
    cutoffs: int = Field(default=4, ge=1, le=10)
    min_history: int = Field(default=3, ge=1)
    n_estimators: int = Field(default=300, ge=1)
    learning_rate: float = Field(default=0.06, gt=0)
    num_leaves: int = Field(default=3, ge=2)
    min_child_samples: int = Field(default=100, ge=1)
    seed: int = 7
    # One thread: on a shared machine, OpenMP threads that wait for a busy core cost more than they give.
    num_threads: int = Field(default=1, ge=0)


class RecsSettings(BaseModel):
    type_weights: TypeWeights = Field(default_factory=TypeWeights)
    recency_half_life: float = Field(default=5.0, gt=0)  # in interactions: the 6th most recent counts half
    history_limit: int = Field(default=1000, ge=1, le=10_000)  # recent interactions that make up a profile
    last_items: int = Field(default=5, ge=1, le=50)  # items the sequential sources start from
    last_items_decay: float = Field(default=0.5, gt=0, le=1)  # weight of the j-th most recent of them: decay**j
    source_depth: int = Field(default=50, ge=1, le=1000)  # candidates asked of each source
    negative_weight: float = Field(default=1.0, ge=0)  # how strongly negative seeds count against their neighbours
    negative_demotion: float = Field(default=1.0, ge=0)  # final-score penalty per unit of similarity to a negative
    trending_days: float = Field(default=7.0, gt=0)
    # An answer shorter than k (nothing learnt yet, or deletions and a filter left the sources short) is filled
    # with the catalog's items by this number or date field, highest first; None leaves it short.
    fill_by: str | None = "popularity"
    co_interaction: CoInteractionSettings = Field(default_factory=CoInteractionSettings)
    transitions: TransitionSettings = Field(default_factory=TransitionSettings)
    ease: EaseSettings = Field(default_factory=EaseSettings)
    ranker: RankerSettings = Field(default_factory=RankerSettings)
    # How far down a source's ranked list candidates are checked against a request's filter before it gives up.
    filter_scan_limit: int = Field(default=5000, ge=1, le=100_000)
    # The periodic refresh (a Celery beat task; `trawl recs refresh` runs it once): rebuild the artefacts and
    # retrain the ranker this often, when interactions were recorded since the last run.
    refresh_interval_s: float = Field(default=3600.0, gt=0)
    refresh_time_limit_s: int = Field(default=3600, ge=10)
    # How often the API checks for newly published artefacts (one small file read per check).
    reload_every_s: float = Field(default=30.0, ge=0)
    # Where the periodic job writes the trained artefacts and every API process reads them: a folder
    # (`artefacts_dir`, default DATA_DIR/recs) that worker and API must both see, or with `artefacts.kind=s3`
    # a bucket, for hosts that share no disk.
    artefacts_dir: Path | None = None
    artefacts: RecsArtefactsStore = Field(default_factory=RecsArtefactsStore)
    # The SQLite store of the embedded default (default: DATA_DIR/interactions.sqlite).
    interactions_db: Path | None = None
    # The OpenSearch index of interactions when the engine is OpenSearch (default: "<index alias>-interactions").
    interactions_index: str | None = None
    # On OpenSearch, have each write return only once its interactions are searchable in that index (for
    # readers of the index itself); every write then waits for the next refresh, up to a second. Reads
    # through the store see a write at once either way.
    interactions_wait_for_refresh: bool = False

    def artefacts_path(self, data_dir: Path) -> Path:
        return self.artefacts_dir if self.artefacts_dir is not None else data_dir / "recs"

    def interactions_path(self, data_dir: Path) -> Path:
        return self.interactions_db if self.interactions_db is not None else data_dir / "interactions.sqlite"

    def interactions_index_name(self, alias: str) -> str:
        return self.interactions_index or f"{alias}-interactions"
