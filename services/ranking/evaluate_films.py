"""Ranking on the film catalog, with judgments derived from the catalog's own fields.

No film catalog with human judgments can be had here, and Cranfield (aeronautics abstracts, topical queries)
is what the shipped model learned from. This evaluation asks whether that model helps or hurts on a catalog
unlike Cranfield, on the queries a film catalog gets most, whose right answers the catalog itself records:

  title        a film's title as a user types it (lower case, no punctuation): that film, and only it
  title typo   the same with two adjacent letters of its longest word swapped ("avaatr"): that film
  director     a director's name: every film they directed in the catalog
  actor        an actor's name: every film whose cast lists them

Only titles no other film shares are asked (a remake would make two right answers). These are navigational and
entity queries; topical ones ("dinosaurs") have no derivable answer and are not measured here.

    python -m services.ranking.evaluate_films                    # the shipped model against the fused order
    python -m services.ranking.evaluate_films --model DIR ...    # also models written by --write-default-model

Every system sees the same candidates (retrieval runs once per query): BM25 alone, vector alone, the fused
order the service serves without a model (`TRAWL_RANKING__MODEL=none`), then each model re-ranking it as the
API does. nDCG@10, MRR@10 and P@1 by ir-measures, per kind of query and over all.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.core.domain import CatalogSchema, Item
from services.datasets.films import Credits
from services.ranking.evaluate import RESULTS, ROOT, MemoGenerator, Run, embed_items, fill_index
from services.ranking.features import FeatureExtractor
from services.ranking.model import RankingModel
from services.ranking.train import TrainingSet, rows_from_judgments
from services.search.pipeline import SearchPipeline
from services.search.protocols import Fuser, Scorer
from services.search.types import SearchQuery

KINDS = ("title", "title typo", "director", "actor")
# Topical queries have no derivable answer: the first model's top 10 is reported beside the fused order's, with
# how many of its places went to films the fused order ranked below 30 (what the review of the demo counted).
TOPICAL = (
    "dinosaurs", "shark", "heist comedy", "space station", "world war ii submarine", "vampire romance", "boxing",
    "time travel", "zombie apocalypse", "talking animals", "1994 drama", "superhero", "haunted house", "mafia",
    "robot", "alien invasion", "pixar", "road trip", "courtroom drama", "high school musical",
)  # fmt: skip
_APOSTROPHES = re.compile(r"['’`]")
_NOT_WORD = re.compile(r"[^\w]+", re.UNICODE)


def typed(text: str) -> str:
    """What a user types for a title or a name: lower case, apostrophes dropped ("Ocean's" → "oceans"), any
    other punctuation a space."""
    return " ".join(_NOT_WORD.sub(" ", _APOSTROPHES.sub("", text.lower())).split())


def misspelt(text: str) -> str | None:
    """Two adjacent letters of the longest word (of five letters or more) swapped, inside the word: the typo
    an edit distance of one forgives. None when no word is long enough or the swap changes nothing."""
    words = text.split()
    longest = max(range(len(words)), key=lambda i: len(words[i]), default=None)
    if longest is None or len(words[longest]) < 5:
        return None
    word = words[longest]
    at = len(word) // 2
    swapped = word[: at - 1] + word[at] + word[at - 1] + word[at + 1 :]
    if swapped == word:
        return None
    return " ".join([*words[:longest], swapped, *words[longest + 1 :]])


HALVES = ("train", "test")


def half_of(subject: str) -> str:
    """A film (by id) or a person (by name) falls in one half for good: a stable hash, not the sample's seed."""
    return HALVES[hashlib.sha256(subject.encode()).digest()[0] % 2]


@dataclass(frozen=True)
class FilmQueries:
    text: dict[str, str]  # query key -> text
    qrels: dict[str, dict[str, int]]  # query key -> item id -> grade
    kind: dict[str, str]  # query key -> one of KINDS


def film_queries(
    titles: Mapping[str, str],
    directors: Mapping[str, Sequence[str]],
    casts: Mapping[str, Sequence[str]],
    *,
    titles_asked: int = 300,
    people_asked: int = 100,
    director_films: tuple[int, int] = (3, 15),
    actor_films: tuple[int, int] = (6, 30),
    half: str | None = None,
    seed: int = 0,
) -> FilmQueries:
    """Queries and their answers from the catalog's fields, sampled with a fixed seed. `titles`, `directors`
    and `casts` are by item id; a person is asked when the number of their films is within the bounds given
    (one film is a known-item query again; hundreds cannot fit in ten places). `half` ("train" or "test")
    asks only of the films and people in that half (`half_of`): the shipped model trains on one half and
    this evaluation measures the other. A title's answer has grade 4 (the one right answer, as Cranfield's
    best), a person's films grade 3 each."""
    if half not in (None, *HALVES):
        raise ValueError(f"half must be one of {HALVES}")
    rng = np.random.default_rng(seed)
    out = FilmQueries({}, {}, {})

    def add(key: str, text: str, relevant: Sequence[str], kind: str) -> None:
        grade = 4 if kind.startswith("title") else 3
        out.text[key], out.qrels[key], out.kind[key] = text, dict.fromkeys(relevant, grade), kind

    def in_half(subject: str) -> bool:
        return half is None or half_of(subject) == half

    def sample(keys: Sequence[str], count: int) -> list[str]:
        if not keys:
            return []
        picked = rng.choice(len(keys), size=min(count, len(keys)), replace=False)
        return [keys[int(i)] for i in sorted(picked)]

    by_text = Counter(typed(t) for t in titles.values())
    unique = [i for i, t in titles.items() if typed(t) and by_text[typed(t)] == 1 and in_half(i)]
    for item in sample(unique, titles_asked):
        add(f"title:{item}", typed(titles[item]), [item], "title")
    with_typo = [i for i in unique if misspelt(typed(titles[i])) is not None]
    for item in sample(with_typo, titles_asked):
        add(f"typo:{item}", misspelt(typed(titles[item])) or "", [item], "title typo")
    for kind, credits, (low, high) in (
        ("director", directors, director_films),
        ("actor", casts, actor_films),
    ):
        films: dict[str, list[str]] = {}
        for item, names in credits.items():
            for name in dict.fromkeys(typed(n) for n in names):
                if name:
                    films.setdefault(name, []).append(item)
        people = sorted(n for n, f in films.items() if low <= len(f) <= high and in_half(n))
        for name in sample(people, people_asked):
            add(f"{kind}:{name}", name, films[name], kind)
    return out


@dataclass(frozen=True)
class Measured:
    name: str
    by_kind: dict[str, dict[str, float]]  # kind (and "all") -> measure -> value


def measure_by_kind(name: str, run: Run, queries: FilmQueries) -> Measured:
    import ir_measures
    from ir_measures import RR, P, nDCG

    measures = {"ndcg@10": nDCG @ 10, "mrr@10": RR @ 10, "p@1": P @ 1}
    by_kind: dict[str, dict[str, float]] = {}
    for kind in (*KINDS, "all"):
        keys = [k for k in queries.qrels if kind in ("all", queries.kind[k])]
        if not keys:
            continue
        # a query the system answered with nothing counts as 0, not as absent
        kind_run = {k: run.get(k) or {"-": 0.0} for k in keys}
        agg = ir_measures.calc_aggregate(list(measures.values()), {k: queries.qrels[k] for k in keys}, kind_run)
        by_kind[kind] = {label: round(float(agg[m]), 4) for label, m in measures.items()}
        by_kind[kind]["queries"] = len(keys)
    return Measured(name, by_kind)


@dataclass
class FilmIndex:
    """The film catalog in an embedded index, with what runs queries on it as the service does: the default
    search settings' retrievers (memoised per query), fusion, and a feature extractor reading its vectors."""

    items: list[Item]
    credits: dict[str, Credits]
    embedding_model: str
    generator: MemoGenerator
    fuser: Fuser
    extractor: FeatureExtractor
    fusion: str

    def queries(self, *, titles: int, people: int, half: str | None) -> FilmQueries:
        return film_queries(
            {i.id: i.title for i in self.items},
            {i.id: self.credits[i.id].directors for i in self.items},
            {i.id: self.credits[i.id].cast for i in self.items},
            titles_asked=titles,
            people_asked=people,
            half=half,
        )

    def training_set(self, queries: FilmQueries, *, window: int, depth: int = 200) -> TrainingSet:
        """Features and labels of the top `window` fused candidates of each query (for a model to learn from)."""
        return rows_from_judgments(
            self.generator,
            self.fuser,
            self.extractor,
            queries.text,
            queries.qrels,
            window=window,
            depth=depth,
            source="derived:films",
        )


@contextmanager
def film_index(
    limit: int, cache_dir: Path | None, progress: Callable[[str], None] = lambda s: None
) -> Iterator[FilmIndex]:
    from services.core.embedding import SentenceTransformerEmbedder
    from services.core.engines.embedded import EmbeddedEngine
    from services.core.settings import CoreSettings
    from services.datasets.films import film_credits, load_films
    from services.search.cache import CachingEmbedder
    from services.search.fusion import build_fuser
    from services.search.retrievers import CandidateGenerator, KeywordRetriever, VectorRetriever
    from services.search.settings import SearchSettings

    items = load_films(limit)
    credits = film_credits(limit)
    with tempfile.TemporaryDirectory(prefix="trawl-eval-films-") as tmp:
        core = CoreSettings(engine="embedded", data_dir=Path(tmp) / "var", index_alias="films")
        search = SearchSettings()  # the service's defaults: field boosts, RRF, typo fallback
        embedder = SentenceTransformerEmbedder(core.embedding)
        progress(f"embedding {len(items)} films ({embedder.model_id}; cached under {cache_dir})")
        vectors = embed_items(embedder, items, cache_dir)
        engine = EmbeddedEngine(core)
        try:
            alias = core.index_alias
            fill_index(engine, alias, embedder, items, vectors)
            keyword = KeywordRetriever(engine, alias, boosts=search.boosts, typo_fallback=search.typo_fallback)
            vector = VectorRetriever(engine, alias, CachingEmbedder(embedder))
            yield FilmIndex(
                items,
                credits,
                embedder.model_id,
                MemoGenerator(CandidateGenerator([keyword, vector])),
                build_fuser(search.fusion, weights=search.weights, rrf_k=search.rrf_k),
                FeatureExtractor(vectors=lambda ids: engine.get_vectors(alias, ids)),
                search.fusion,
            )
        finally:
            engine.close()


def evaluate_films(
    *,
    limit: int = 3000,
    models: Sequence[tuple[str, RankingModel]] = (),
    titles_asked: int = 300,
    people_asked: int = 100,
    depth: int = 200,
    window: int = 100,
    cache_dir: Path | None = None,
    progress: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """The held-out half's queries (`half_of`), through the search pipeline: BM25, vector, the fused order,
    then each model re-ranking the fused order as the API does."""
    from services.ranking.scorer import LambdaRankScorer, ModelSlot
    from services.search.facets import FacetCounter
    from services.search.reranking import NoopReranker
    from services.search.scoring import PassthroughScorer

    started = time.perf_counter()
    with film_index(limit, cache_dir, progress) as index:
        queries = index.queries(titles=titles_asked, people=people_asked, half="test")
        counts = Counter(queries.kind.values())
        progress(f"{len(index.items)} films; held-out queries: " + ", ".join(f"{counts[k]} {k}" for k in KINDS))
        facets = FacetCounter(CatalogSchema())

        def pipeline_of(scorer: Scorer) -> SearchPipeline:
            return SearchPipeline(index.generator, index.fuser, scorer, NoopReranker(), facets)

        def run(name: str, scorer: Scorer, legs: tuple[str, ...] | None) -> Measured:
            progress(f"running {name} on {len(queries.text)} queries")
            pipeline = pipeline_of(scorer)
            out: Run = {}
            for key, text in queries.text.items():
                res = pipeline.run(SearchQuery(text, depth=depth, legs=legs), size=10)
                out[key] = {c.id: float(-c.rank) for c in res.items}
            return measure_by_kind(name, out, queries)

        plain = PassthroughScorer()
        systems = [
            run("BM25", plain, ("keyword",)),
            run("vector", plain, ("vector",)),
            run(f"hybrid {index.fusion.upper()}: the fused order (TRAWL_RANKING__MODEL=none)", plain, None),
        ]
        topical: dict[str, Any] = {}
        for n, (name, model) in enumerate(models):
            model.check(index.extractor.feature_set, index.extractor.params)  # as the service does
            scorer = LambdaRankScorer(ModelSlot(model), index.extractor, window=window)
            systems.append(run(name, scorer, None))
            if n == 0:
                progress(f"topical queries, side by side: the fused order and {name}")
                topical = side_by_side(pipeline_of(plain), pipeline_of(scorer), name, depth)
    return {
        "collection": f"bokeh-sampledata films, the {len(index.items)} most reviewed",
        "judgments": "derived from the catalog's fields (titles, directors, casts); see the module's docstring",
        "held_out": "the 'test' half of films and people (services.ranking.evaluate_films.half_of)",
        "engine": "embedded (Tantivy BM25, Faiss HNSW), the service's default search settings",
        "embedding_model": index.embedding_model,
        "candidate_depth_per_leg": depth,
        "window": window,
        "queries": {k: counts[k] for k in KINDS},
        "examples": {k: [queries.text[q] for q in queries.text if queries.kind[q] == k][:5] for k in KINDS},
        "systems": [{"name": s.name, **s.by_kind} for s in systems],
        "models": [{"name": n, "model_id": m.model_id, "training": m.card.training.source} for n, m in models],
        "topical": topical,
        "seconds": round(time.perf_counter() - started, 1),
    }


def side_by_side(fused: SearchPipeline, ranked: SearchPipeline, name: str, depth: int) -> dict[str, Any]:
    """Each topical query's top 10, fused and ranked, with the fused rank of each ranked film (None: below 30)."""
    queries: dict[str, Any] = {}
    below = 0
    for q in TOPICAL:
        order = fused.run(SearchQuery(q, depth=depth), size=30).items
        fused_rank = {c.id: c.rank for c in order}
        top = ranked.run(SearchQuery(q, depth=depth), size=10).items
        below += sum(c.id not in fused_rank for c in top)
        queries[q] = {
            "fused": [c.item.title for c in order[:10]],
            "ranked": [[c.item.title, fused_rank.get(c.id)] for c in top],
        }
    return {"model": name, "places_from_below_fused_30": below, "places": 10 * len(TOPICAL), "queries": queries}


def table(report: Mapping[str, Any]) -> str:
    kinds = [k for k in (*KINDS, "all") if k in report["systems"][0]]
    head = "| system | " + " | ".join(f"{k} nDCG@10 / P@1" for k in kinds) + " |"
    lines = [head, "|---|" + "---:|" * len(kinds)]
    for s in report["systems"]:
        cells = [f"{s[k]['ndcg@10']:.3f} / {s[k]['p@1']:.3f}" for k in kinds]
        lines.append(f"| {s['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(report: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [k for k in (*KINDS, "all") if k in report["systems"][0]]
    systems = report["systems"]
    fig, ax = plt.subplots(figsize=(11, 4.2 + 0.25 * len(systems)))
    width = 0.8 / len(systems)
    for n, s in enumerate(systems):
        xs = [k + n * width for k in range(len(kinds))]
        ax.bar(xs, [s[k]["ndcg@10"] for k in kinds], width, label=s["name"])
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(kinds))], kinds)
    ax.set_ylabel("nDCG@10")
    ax.set_ylim(0, 1)
    ax.set_title(report["collection"] + ": judgments derived from the catalog, the held-out half")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=1, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    from services.ranking.registry import DEFAULT_MODEL_DIR, load_default_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=3000, help="the most reviewed films to index")
    parser.add_argument("--titles", type=int, default=300, help="title queries (and as many with a typo)")
    parser.add_argument("--people", type=int, default=100, help="director queries (and as many actors)")
    parser.add_argument("--model", type=Path, action="append", default=[], help="a model folder (model.txt, card.json)")
    parser.add_argument("--no-default", action="store_true", help="leave out the shipped default model")
    parser.add_argument("--json", type=Path, default=RESULTS / "ranking_films.json")
    parser.add_argument("--png", type=Path, default=RESULTS / "ranking_films.png")
    parser.add_argument("--cache", type=Path, default=ROOT / "var" / "cache", help="film vectors cache")
    args = parser.parse_args(argv)
    models: list[tuple[str, RankingModel]] = []
    if not args.no_default:
        models.append(
            ("+ the shipped default model (LambdaRank: Cranfield, known items, film queries)", load_default_model())
        )
    for folder in args.model:
        model = load_default_model(folder)
        same = folder.resolve() == DEFAULT_MODEL_DIR.resolve()
        models.append((f"+ {model.model_id} ({folder})" + (" (the shipped one)" if same else ""), model))
    report = evaluate_films(
        limit=args.limit,
        models=models,
        titles_asked=args.titles,
        people_asked=args.people,
        cache_dir=args.cache,
        progress=lambda s: print(f"[films] {s}", file=sys.stderr, flush=True),
    )
    print(table(report))
    if report["topical"]:
        t = report["topical"]
        print(
            f"\ntopical queries (no judgments; in the JSON side by side): {t['places_from_below_fused_30']} of the "
            f"{t['places']} top-10 places of {t['model']} went to films the fused order ranked below 30"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.png)
    print(f"wrote {args.json} and {args.png} ({report['seconds']} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
