"""Proximity features: distances between different query terms, for all candidates at once."""

from __future__ import annotations

import numpy as np
import pytest

from services.core.domain import Item
from services.ranking.features import SEARCH_FEATURES, FeatureExtractor
from services.ranking.proximity import proximity
from services.ranking.text import Analyser
from services.search.fusion import RRFFuser
from services.search.types import Candidate, SearchQuery

pytestmark = pytest.mark.unit


def test_min_distance_and_close_pairs_per_candidate() -> None:
    an = Analyser()
    q = np.unique(an.term_ids("boundary layer"))
    docs = an.analyse_all(
        [
            "the boundary layer of a boundary layer",  # adjacent, twice (and layer-boundary once in between)
            "boundary conditions for a thin viscous compressible layer",  # 5 terms apart
            "a layer only",  # one query term: no distance
            "",
        ]
    )
    near = proximity(docs, q)
    assert near.min_distance_inv.tolist() == [1.0, pytest.approx(1 / 5), 0.0, 0.0]
    assert near.close_pairs_log[0] == pytest.approx(np.log1p(3))
    assert near.close_pairs_log[1:].tolist() == [0.0, 0.0, 0.0]
    # a one-term query has no pairs
    assert proximity(docs, np.unique(an.term_ids("layer"))).min_distance_inv.tolist() == [0.0] * 4


def test_proximity_features_are_in_the_versioned_list() -> None:
    assert SEARCH_FEATURES.version >= 2
    names = SEARCH_FEATURES.names
    items = [
        Item.parse({"id": "near", "title": "Boundary layer", "body": "a boundary layer flow"}),
        Item.parse(
            {"id": "far", "title": "Layer", "body": "boundary conditions of the cold wall and its thin outer layer"}
        ),
    ]
    cands = [Candidate(i.id, i, {"keyword": 1.0}, {"keyword": r}) for r, i in enumerate(items, start=1)]
    m = FeatureExtractor().run(SearchQuery("boundary layer"), RRFFuser().run(cands))
    col = {n: m.values[:, names.index(n)].tolist() for n in ("title_proximity", "body_proximity", "body_close_pairs")}
    assert col["title_proximity"] == [1.0, 0.0]
    # stop words do not count: "boundary conditions cold wall thin outer layer" puts them 6 terms apart
    assert col["body_proximity"] == [1.0, pytest.approx(1 / 6)]
    assert col["body_close_pairs"][0] > 0 == col["body_close_pairs"][1]
