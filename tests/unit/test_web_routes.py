"""The web page's routes (services/api/routes/web.py): served as plain files, no build, nothing from elsewhere.

The app is not started (no lifespan): serving the page needs neither an engine nor a model. The page itself is
tested in a browser by tests/e2e/test_web_page.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.api.routes.web import WEB_DIR
from services.api.settings import ApiSettings

pytestmark = pytest.mark.unit


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    return TestClient(create_app(ApiSettings(data_dir=tmp_path / "var", load_model=False)))


def test_the_pages_and_their_assets_are_served(client: TestClient) -> None:
    for path, kind in (("/", "text/html"), ("/admin.html", "text/html"), ("/web/app.js", "javascript")):
        response = client.get(path)
        assert response.status_code == 200, path
        assert kind in response.headers["content-type"], path
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-content-type-options"] == "nosniff"
    assert client.head("/").status_code == 200
    css = client.get("/web/style.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_html_forbids_anything_from_elsewhere(client: TestClient) -> None:
    csp = client.get("/").headers["content-security-policy"]
    assert "default-src 'self'" in csp and "connect-src 'self'" in csp and "script-src 'self'" in csp
    for page in ("index.html", "admin.html"):
        html = (WEB_DIR / page).read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), f"inline script in {page}"  # the CSP forbids it
        assert not re.search(r"(src|href)=\"(https?:)?//", html), f"an external reference in {page}"
    for script in WEB_DIR.glob("*.js"):
        assert not re.search(r"https?://", script.read_text().replace("https://www.w3.org/WAI/", "")), script.name


def test_a_file_revalidates_with_its_etag(client: TestClient) -> None:
    first = client.get("/web/app.js")
    again = client.get("/web/app.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and not again.content


@pytest.mark.parametrize("path", ["/web/../pyproject.toml", "/web/%2e%2e/routes/web.py", "/web/", "/web/nothing.js"])
def test_nothing_outside_the_web_folder_nor_missing_files(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404 and response.json()["detail"][0]["type"] == "not_found"


def test_unknown_api_paths_still_answer_the_api_error(client: TestClient) -> None:
    # the page tells "not there yet" from these answers, so no catch-all may swallow them
    unknown = client.get("/v1/no-such-endpoint")
    assert unknown.status_code == 404 and unknown.json()["detail"][0]["type"] == "not_found"
    posted = client.post("/v1/no-such-endpoint", json={})
    assert posted.status_code == 404 and posted.json()["detail"][0]["type"] == "not_found"
    assert client.post("/admin.html").status_code == 405
    assert "/" not in client.get("/openapi.json").json()["paths"]  # the page is not part of the API
