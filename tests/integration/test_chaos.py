"""Chaos: 10,000 content events while a worker is SIGKILLed mid-batch, Redis restarts and OpenSearch is down
for 30 s. At the end every item's indexed content equals the expected final state. All on loopback."""

from __future__ import annotations

import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from services.core.domain import Item
from tests.integration.conftest import wait_until_done
from tests.integration.test_ingestion import engine_for, ledger_for, post_events

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(1800)]
INFRA = Path(__file__).resolve().parents[2] / "infra"
N_EVENTS = 10_000
N_ITEMS = 1500


def make_events(seed: int = 7) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any] | None]]:
    """Rounds of events (version = round); some arrive late, some twice. Returns them and the expected state.

    Patches follow the event they patch (they never overtake a late one), so the expected state is the fold of
    each item's events in version order, whatever order upserts and deletes arrive in.
    """
    rng = random.Random(seed)
    expected: dict[str, dict[str, Any] | None] = {}
    sent: list[dict[str, Any]] = []
    late: list[tuple[int, dict[str, Any]]] = []
    held: set[str] = set()  # items whose last event is held back: no patch for them until it is sent
    version = 0
    while len(sent) + len(late) < N_EVENTS:
        version += 1
        for item_id in rng.sample([f"item-{i}" for i in range(N_ITEMS)], 300):
            live = expected.get(item_id)
            roll = rng.random()
            if live is not None and item_id not in held and roll < 0.25:
                fields = {"price": round(rng.uniform(1, 99), 2)} if roll < 0.15 else {"tags": [f"t{version % 9}"]}
                event: dict[str, Any] = {"op": "patch", "id": item_id, "fields": fields, "version": version}
                expected[item_id] = {**live, **fields}
            elif roll < 0.85:
                item = {
                    "id": item_id,
                    "title": f"Wing section {item_id} revision {version}",
                    "body": f"pressure distribution measured in round {version}",
                    "price": float(version),
                }
                event = {"op": "upsert", "item": item, "version": version}
                expected[item_id] = item
            else:
                event = {"op": "delete", "id": item_id, "version": version}
                expected[item_id] = None
            if event["op"] != "patch" and rng.random() < 0.05:
                late.append((version + 2, event))  # overtaken by the next rounds' events
                held.add(item_id)
            else:
                sent.append(event)
            if rng.random() < 0.04:
                sent.append(dict(event))  # a replay
        due = [e for v, e in late if v <= version]
        late = [(v, e) for v, e in late if v > version]
        sent += due
        held -= {e.get("id") or e["item"]["id"] for e in due}
    sent += [e for _, e in late]
    return sent[:N_EVENTS], expected


def _fold_check(events: list[dict[str, Any]]) -> dict[str, dict[str, Any] | None]:
    """The expected state recomputed from the events actually sent (the list was cut at N_EVENTS)."""
    by_item: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_item.setdefault(e.get("id") or e["item"]["id"], []).append(e)
    out: dict[str, dict[str, Any] | None] = {}
    for item_id, evs in by_item.items():
        state: dict[str, Any] | None = None
        seen: set[int] = set()
        for e in sorted(evs, key=lambda e: e["version"]):
            if e["version"] in seen:
                continue
            seen.add(e["version"])
            if e["op"] == "upsert":
                state = e["item"]
            elif e["op"] == "delete":
                state = None
            elif state is not None:
                state = {**state, **e["fields"]}
        out[item_id] = state
    return out


def _sh(script: str) -> None:
    done = subprocess.run(["bash", str(INFRA / script)], capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, f"{script} failed:\n{done.stderr[-2000:]}"


def test_nothing_accepted_is_lost_duplicated_or_resurrected(
    stack_env: dict[str, str], services: Callable[..., Any]
) -> None:
    env = {
        **stack_env,
        "TRAWL_PIPELINE__LEASE_S": "20",
        "TRAWL_QUEUES__SOFT_TIME_LIMIT_S": "15",
        "TRAWL_QUEUES__TIME_LIMIT_S": "18",
        "TRAWL_OPENSEARCH__MAX_RETRIES": "2",
        "TRAWL_PIPELINE__BATCH_SIZE": "64",
    }
    events, _ = make_events()
    expected = _fold_check(events)
    ledger = ledger_for(env)
    api = services("api", env)
    worker = services("worker", env)
    t0 = time.monotonic()
    timeline: list[str] = []
    try:
        post_events(api.url, events[:5000])
        while ledger.counts()["indexed"] < 300:
            time.sleep(0.2)
        worker.kill()  # SIGKILL mid-batch: its claimed events stay "processing" until their lease expires
        timeline.append(f"{time.monotonic() - t0:.0f}s worker SIGKILLed with {ledger.counts()['processing']} in flight")
        services("worker", env)
        post_events(api.url, events[5000:7500])
        _sh("redis/stop.sh")
        _sh("redis/start.sh")
        timeline.append(f"{time.monotonic() - t0:.0f}s Redis restarted (its queued messages are gone)")
        post_events(api.url, events[7500:])
        _sh("opensearch/stop.sh")
        timeline.append(f"{time.monotonic() - t0:.0f}s OpenSearch stopped")
        time.sleep(30)
    finally:
        _sh("opensearch/start.sh")
        timeline.append(f"{time.monotonic() - t0:.0f}s OpenSearch back")
    counts = wait_until_done(ledger, timeout=900, expect=N_EVENTS)
    timeline.append(f"{time.monotonic() - t0:.0f}s all {N_EVENTS} events done: {counts}")

    alias = env["TRAWL_INDEX_ALIAS"]
    engine = engine_for(env)
    engine.refresh(alias)
    indexed = {d.item.id: d.content_hash for batch in engine.scan(alias, with_vectors=False) for d in batch}
    total = engine.count(alias)
    lost = stale = resurrected = 0
    for item_id, state in expected.items():
        if state is None:
            resurrected += item_id in indexed
        elif item_id not in indexed:
            lost += 1
        elif indexed[item_id] != Item.parse(state).content_hash:
            stale += 1
    duplicated = total - len(indexed)
    print("\n".join(timeline))
    print(
        f"events {N_EVENTS}: expected live {sum(s is not None for s in expected.values())}, indexed {len(indexed)};"
        f" lost {lost}, stale {stale}, duplicated {duplicated}, resurrected {resurrected}, dead {counts['dead']}"
    )
    assert (lost, stale, duplicated, resurrected, counts["dead"]) == (0, 0, 0, 0, 0)
    engine.drop_alias(alias)
