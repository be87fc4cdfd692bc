"""Settings of the API deployable: the shared core and the indexer's (it accepts events), plus HTTP-only ones."""

from __future__ import annotations

from pydantic import Field, SecretStr

from indexer.settings import IndexerSettings
from services.ranking.settings import RankingSettings
from services.rules.settings import RulesSettings
from services.search.settings import SearchSettings


class ApiSettings(IndexerSettings):
    host: str = "127.0.0.1"
    port: int = 8000
    admin_key: SecretStr | None = None
    load_model: bool = True  # off only for tools that never embed a query
    search: SearchSettings = Field(default_factory=SearchSettings)
    ranking: RankingSettings = Field(default_factory=RankingSettings)
    rules: RulesSettings = Field(default_factory=RulesSettings)
    max_body_bytes: int = 10 * 1024 * 1024
