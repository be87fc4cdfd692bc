"""A small synthetic world for the recommendation tests.

Two groups of items with distinct content: a1..a6 (vectors near e0) and b1..b6 (near e1); c1 and c2 are new
items (content near A and B) that nobody has interacted with yet. Twenty users each went through a1 -> a6 in
order long ago; twenty others went through b1 -> b6 recently, so B is trending.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from services.core.domain import Item
from services.core.engines.base import Document
from services.core.engines.embedded import EmbeddedEngine
from services.core.settings import CoreSettings
from services.recs.interactions import Interaction, InteractionType

T0 = datetime(2024, 1, 1, tzinfo=UTC)
A = [f"a{n}" for n in range(1, 7)]
B = [f"b{n}" for n in range(1, 7)]
NEW = ["c1", "c2"]
ALIAS = "items"
DIM = 8


def at(days: float) -> datetime:
    return T0 + timedelta(days=days)


def world_interactions() -> list[Interaction]:
    out: list[Interaction] = []
    for n in range(20):
        for k, item in enumerate(A):
            out.append(Interaction(f"ua{n}", item, InteractionType.CLICK, at(n * 0.1) + timedelta(minutes=k)))
    for n in range(20):
        for k, item in enumerate(B):
            out.append(Interaction(f"ub{n}", item, InteractionType.CLICK, at(30 + n * 0.1) + timedelta(minutes=k)))
    out.sort(key=lambda i: i.epoch)
    return out


def item_vectors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    e0, e1 = np.eye(DIM, dtype=np.float32)[0], np.eye(DIM, dtype=np.float32)[1]
    out = {}
    for item in [*A, "c1"]:
        out[item] = e0 + 0.15 * rng.normal(size=DIM).astype(np.float32)
    for item in [*B, "c2"]:
        out[item] = e1 + 0.15 * rng.normal(size=DIM).astype(np.float32)
    return {k: (v / np.linalg.norm(v)).astype(np.float32) for k, v in out.items()}


def world_engine(folder: Path) -> EmbeddedEngine:
    engine = EmbeddedEngine(CoreSettings(data_dir=folder))
    version = engine.create_version(ALIAS, dimension=DIM, model_id="synthetic")
    docs = [Document(Item(id=item, title=f"film {item}"), vec) for item, vec in item_vectors().items()]
    assert engine.upsert(ALIAS, docs, version=version.version).ok
    engine.point_alias(ALIAS, version.version)
    return engine
