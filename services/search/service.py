"""Wiring: the search, suggest and similar services built from settings, an engine and an embedder.

The API builds these once at startup; a CLI, a benchmark or an evaluation builds the same objects the same
way, so the code path measured is the code path served.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from services.core.embedding import Embedder
from services.core.engines.base import SearchEngine
from services.core.filters import HiddenItems
from services.core.settings import CoreSettings
from services.search.cache import CachingEmbedder
from services.search.facets import FacetCounter
from services.search.feedback import FeedbackGenerator
from services.search.fusion import build_fuser
from services.search.pipeline import SearchPipeline
from services.search.protocols import CandidateSource, Reranker, Retriever, Scorer
from services.search.reranking import NoopReranker
from services.search.retrievers import CandidateGenerator, KeywordRetriever, VectorRetriever
from services.search.scoring import PassthroughScorer
from services.search.settings import SearchSettings
from services.search.similar import SimilarItems
from services.search.suggest import Suggester


@dataclass
class SearchServices:
    pipeline: SearchPipeline
    suggester: Suggester
    similar: SimilarItems
    embedder: CachingEmbedder | None
    executor: ThreadPoolExecutor

    def retire(self) -> None:
        """The alias moved on: let go of what only new requests would use (held answers and hits, background
        embedding), keeping what requests in flight may still need (the executor, the engine, the model)."""
        self.suggester.forget()
        if self.embedder is not None:
            self.embedder.close()  # its background work only; embedding on a request's thread goes on

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.embedder is not None:
            self.embedder.close()


def build_search_services(
    core: CoreSettings,
    search: SearchSettings,
    engine: SearchEngine,
    embedder: Embedder | None,
    *,
    scorer: Scorer | None = None,
    reranker: Reranker | None = None,
    hidden: HiddenItems | None = None,
) -> SearchServices:
    """Without an embedder (a tool that never embeds) search is keyword-only and suggest has no vector leg.
    `scorer` and `reranker` fill the scoring and re-ranking slots (services/ranking, services/rules); without
    them the fused order is final. `hidden` (the rules, too): what hide rules take out of suggest and similar items."""
    alias = core.index_alias
    executor = ThreadPoolExecutor(max_workers=search.workers, thread_name_prefix="search-leg")
    cached = CachingEmbedder(embedder, search.query_vector_cache) if embedder is not None else None
    keyword = KeywordRetriever(engine, alias, boosts=search.boosts, typo_fallback=search.typo_fallback)
    vector = VectorRetriever(engine, alias, cached) if cached is not None else None
    retrievers: list[Retriever] = [keyword] if vector is None else [keyword, vector]
    fuser = build_fuser(search.fusion, weights=search.weights, rrf_k=search.rrf_k)
    generator: CandidateSource = CandidateGenerator(retrievers, executor)
    if search.feedback.enabled:
        generator = FeedbackGenerator(
            CandidateGenerator(retrievers, executor),
            fuser,
            keyword,
            vector,
            engine,
            alias,
            search.feedback,
            executor=executor,
        )
    pipeline = SearchPipeline(
        generator,
        fuser,
        scorer or PassthroughScorer(),
        reranker or NoopReranker(),
        FacetCounter(core.catalog, size=search.facet_size),
    )
    suggester = Suggester(
        engine, alias, cached, search.suggest, executor=executor, max_terms=core.max_query_terms, hidden=hidden
    )
    return SearchServices(pipeline, suggester, SimilarItems(engine, alias, hidden), cached, executor)
