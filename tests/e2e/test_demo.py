"""The README's first command on a small slice of the catalog: `trawl demo --limit 60` ingests the films
through a real worker, joins MovieLens ratings onto them as interactions, trains the recommendation ranker,
serves the API, prints example requests that return sensible results (a personalised recommendation among them),
and a second run reuses the index, the interactions and the trained model.

The slice is the 60 most reviewed films that MovieLens users rated (the demo puts those first), so the join
has thousands of ratings to load and train on."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from services.recs import RecsSettings, SQLiteInteractionStore
from tests.support.processes import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
RECS_CURL = re.compile(r"curl -X POST (http\S+/v1/recommendations) .* -d '(\{[^']*\})'")


def _interaction_count(data_dir: Path) -> int:
    store = SQLiteInteractionStore(RecsSettings().interactions_path(data_dir))  # where the API records them
    try:
        return store.count()
    finally:
        store.close()


def _rated_by(data_dir: Path, user_id: str) -> set[str]:
    store = SQLiteInteractionStore(RecsSettings().interactions_path(data_dir))
    try:
        return store.interacted_items(user_id)
    finally:
        store.close()


def _run_demo(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TRAWL_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"}
    with open(log, "ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "services.cli", "demo", "--limit", "60", "--port", str(port)],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_serving(proc: subprocess.Popen[bytes], log: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "Ctrl-C stops" in text:
            return text
        if proc.poll() is not None:
            raise AssertionError(f"the demo exited early:\n{text[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(f"the demo did not serve in {timeout} s:\n{log.read_text(errors='replace')[-3000:]}")


def _stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    """Ctrl-C, as a user stops it; then the worker it started must be gone too (it runs in a session of its own,
    so only the demo can stop it)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    started = re.search(r"worker started \(pid (\d+)", log.read_text(errors="replace"))
    if started is None:
        return
    worker = int(started.group(1))
    deadline = time.monotonic() + 10  # the worker's pool processes may take a moment after it
    while time.monotonic() < deadline:
        try:
            os.killpg(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(worker, signal.SIGKILL)  # not left running after the test, whatever it asserts
    raise AssertionError(f"the demo stopped but its worker (pid {worker}) did not")


def test_the_demo_ingests_joins_trains_serves_and_restarts_on_what_it_built(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "var"
    first_log = tmp_path / "first.log"
    proc = _run_demo(data_dir, port, first_log)
    try:
        out = _wait_serving(proc, first_log, timeout=600)
        assert "indexed 60 films (0 failed)" in out
        # the join: MovieLens ratings of these films recorded as interactions, and the ranker trained on them
        joined = re.search(r"interactions: ([\d,]+) MovieLens ratings recorded", out)
        assert joined and int(joined.group(1).replace(",", "")) > 1000, out
        loaded = _interaction_count(data_dir)
        assert loaded == int(joined.group(1).replace(",", ""))
        assert "LambdaRank ranker trained" in out
        base = f"http://127.0.0.1:{port}"
        # the example requests it printed, run as printed
        search_url = re.search(r"curl '(http[^']+/v1/search[^']*)'", out)
        similar_url = re.search(r"curl '(http[^']+/similar[^']*)'", out)
        recs_curl = RECS_CURL.search(out)
        assert search_url and similar_url and recs_curl, out
        hits = httpx.get(search_url.group(1), timeout=30).json()["items"]
        assert len(hits) == 3  # the request as printed answers what the tour printed under it
        printed = out[search_url.end() :].split("->", 1)[1].splitlines()[0].strip()
        assert printed == ", ".join(h["item"]["title"] for h in hits)
        similar = httpx.get(similar_url.group(1), timeout=30).json()["items"]
        item_id = similar_url.group(1).split("/items/")[1].split("/")[0]
        assert similar and item_id not in [s["id"] for s in similar]
        # the third: recommendations for a MovieLens user, from their history, by the trained ranker
        body = json.loads(recs_curl.group(2))
        user = body["user_id"]
        assert user.startswith("ml-")
        rated = _rated_by(data_dir, user)
        assert len(rated) >= 10  # a real history in the join
        answer = httpx.post(recs_curl.group(1), json=body, timeout=30).json()
        assert answer["mode"] == "user" and answer["ranker"] == "lambdarank", answer  # personalised, not cold start
        recommended = [r["id"] for r in answer["items"]]
        assert len(recommended) == body["k"] and not set(recommended) & rated
        assert all(r["sources"] and r["item"]["title"] for r in answer["items"])
        assert httpx.get(f"{base}/", timeout=30).status_code == 200  # the web page
        # the demo declares the films' year (MovieLens 100k rated films up to 1998: this slice is of the 1990s)
        nineties = {"range": {"attributes.year": {"gte": 1990, "lt": 2000}}}
        found = httpx.post(f"{base}/v1/search", json={"q": "drama", "filter": nineties}, timeout=30)
        assert found.status_code == 200, found.text
        years = [i["item"]["attributes"]["year"] for i in found.json()["items"]]
        assert years and all(1990 <= y < 2000 for y in years), years
        typo = httpx.get(f"{base}/v1/suggest", params={"q": "jurasic park"}, timeout=30).json()
        assert any(i["item"]["title"] == "Jurassic Park" for i in typo["items"])  # a MovieLens film, in the slice
        # recommendations for a seed item, the seed itself excluded
        recs = httpx.post(f"{base}/v1/recommendations", json={"seed_item_ids": [item_id], "k": 5}, timeout=30)
        assert recs.status_code == 200, recs.text
        assert recs.json()["mode"] == "seeds" and item_id not in [r["id"] for r in recs.json()["items"]]
        # a user's interactions are stored, and what they interacted with is not recommended to them
        seen = [h["id"] for h in hits[:2]]
        posted = httpx.post(
            f"{base}/v1/events/interactions",
            timeout=30,
            json={
                "interactions": [
                    {"user_id": "u1", "item_id": i, "type": "click", "position": n} for n, i in enumerate(seen, start=1)
                ]
            },
        )
        assert posted.status_code == 202 and posted.json()["recorded"] == 2
        bad = httpx.post(f"{base}/v1/events/interactions", json={"user_id": "u1", "item_id": "x", "type": "like"})
        assert bad.status_code == 422 and "type" in bad.text
        for_user = httpx.post(f"{base}/v1/recommendations", json={"user_id": "u1", "k": 10}, timeout=30).json()
        assert for_user["items"] and not set(seen) & {r["id"] for r in for_user["items"]}
    finally:
        _stop(proc, first_log)

    second_log = tmp_path / "second.log"
    proc = _run_demo(data_dir, port, second_log)
    try:
        out = _wait_serving(proc, second_log, timeout=300)
        assert "reusing the index built before" in out and "indexing films" not in out
        assert "reusing the interactions loaded before" in out and "ratings recorded" not in out
        assert "reusing the recommendation models trained before" in out and "ranker trained" not in out
        assert _interaction_count(data_dir) == loaded + 2  # the two clicks above; no rating recorded twice
        again = RECS_CURL.search(out)
        assert again and json.loads(again.group(2)) == body  # the same example user
        answer = httpx.post(again.group(1), json=body, timeout=30).json()
        assert answer["mode"] == "user" and answer["ranker"] == "lambdarank"
    finally:
        _stop(proc, second_log)
