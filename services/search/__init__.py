"""The query service's stages: candidate generation (keyword + vector, concurrently), fusion, scoring,
re-ranking; and the suggest and similar-items services.

Where things are:
    types.py       the typed objects passed between stages (SearchQuery, Candidate, FusedCandidate, ...)
    protocols.py   the roles: Retriever, CandidateSource, Fuser, Scorer, Reranker
    retrievers.py  KeywordRetriever, VectorRetriever, CandidateGenerator (runs the legs side by side)
    feedback.py    FeedbackGenerator: pseudo-relevance feedback, a second pass of both legs (off by default)
    fusion.py      RRF, min-max and z-score fusion with weights
    scoring.py     the scoring slot (PassthroughScorer until a model fills it)
    reranking.py   the re-ranking slot (NoopReranker until rules fill it)
    facets.py      value counts over the final list
    pipeline.py    SearchPipeline: the stages in order, paging, explain
    suggest.py     search-as-you-type; similar.py: nearest items to an item
    cache.py       the LRU cache of query vectors; service.py: everything built from settings
"""
