"""The web page: instant search at `/`, the admin view at `/admin.html`, their assets under `/web/`.

Plain files from `services/api/web/` (ES modules, no build step, nothing fetched from elsewhere). Explicit routes
rather than a catch-all mount at `/`, so an unknown API path still answers the API's JSON 404 (the page relies on
that to tell an endpoint that does not exist yet). Responses revalidate (ETag) so a new deploy is seen at once.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.staticfiles import StaticFiles

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

# Everything from this origin, nothing from anywhere else; no inline script.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)

router = APIRouter(include_in_schema=False)
_files = StaticFiles(directory=WEB_DIR, check_dir=False)


async def _serve(path: str, request: Request) -> Response:
    if not path or any(part in ("", ".", "..") or part.startswith(".") for part in path.split("/")):
        raise HTTPException(404, "Not Found")
    response = await _files.get_response(path, request.scope)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    if path.endswith(".html"):
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["Referrer-Policy"] = "no-referrer"
    return response


@router.api_route("/", methods=["GET", "HEAD"])
async def search_page(request: Request) -> Response:
    """Instant search, facets, similar items, recommendations and explain."""
    return await _serve("index.html", request)


@router.api_route("/admin.html", methods=["GET", "HEAD"])
async def admin_page(request: Request) -> Response:
    """Index versions, reindex progress, rules, model and dead letters (with an admin key)."""
    return await _serve("admin.html", request)


@router.api_route("/web/{path:path}", methods=["GET", "HEAD"])
async def asset(path: str, request: Request) -> Response:
    """The pages' scripts and styles."""
    return await _serve(path, request)
