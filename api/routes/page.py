"""GET /: the chat page, static files served by the gateway.

They hold no data, so they need no key even with auth on; the page asks for
the key and sends it with every API call. No build step, and nothing from a
CDN: the page works offline. Its Content-Security-Policy lets it run only
its own files (no inline script or style), talk only to this origin, and
never be framed.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(include_in_schema=False)


class PageFiles(StaticFiles):
    """The page's assets, with the page's security headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(PAGE_HEADERS)
        return response


def page_html(auth_required: bool) -> str:
    """The page, telling its script whether to ask for a key before any call
    (so no request is sent only to be refused)."""
    template = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    return template.replace("{{AUTH}}", "required" if auth_required else "off")


@router.get("/", response_class=HTMLResponse)
async def chat_page(request: Request) -> HTMLResponse:
    html: str = request.app.state.page_html
    return HTMLResponse(html, headers={**PAGE_HEADERS, "Cache-Control": "no-cache"})
