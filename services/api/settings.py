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
    # Answer well-formed `GET /v1/suggest` requests in front of FastAPI on the embedded engine (keystroke.py):
    # the same answers, 0.5 ms less per keystroke; with one write per answer, in the HTTP protocol itself,
    # before any ASGI task (server.py): 0.1-0.4 ms less at p50, 0.6-0.7 at p99. Off: every request goes
    # through the FastAPI route.
    suggest_fast_path: bool = True
    # uvicorn's line per request. Off by default: search-as-you-type makes a request per keystroke, and the
    # line cost 0.15 ms of a 2-3 ms keystroke (more at p99, when the log file's write stalls). Interactions
    # and metrics are what record use; turn it on to watch requests while debugging.
    access_log: bool = False
    # Write each answer's head and body to the socket together (server.py): 0.4-0.6 ms less at p99 for a
    # request that works a few ms, as a keystroke does. Off: uvicorn's own protocol, two writes per answer.
    one_write_answers: bool = True
