"""The web playground: ``GET /`` is the page, ``/playground/*`` its static files (``app/playground``).

Plain files, no build step and nothing fetched from elsewhere: the page's Content-Security-Policy
lets it load and call only this server. It sits beside the API as one route and one mount, with
no middleware of its own, so the API's hot routes pay nothing for it. Open like health: the page
asks for the API key itself when the server needs one.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parents[2] / "playground"
"""``app/playground``: shipped in the wheel as package data (pyproject.toml)."""
MOUNT = "/playground"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""Only this server: no CDN, no inline script, no framing by other sites."""
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def install_playground(app: FastAPI) -> None:
    """Serve the page at ``/`` and its files under ``/playground`` (registered after the API routes)."""
    page = (STATIC_DIR / "index.html").read_bytes()
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def playground() -> HTMLResponse:
        return HTMLResponse(page, headers=PAGE_HEADERS)

    app.include_router(router)
    app.mount(MOUNT, StaticFiles(directory=STATIC_DIR), name="playground")
