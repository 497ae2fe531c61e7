"""The browser UI on the wire: ``GET /`` for a browser (``Accept: text/html``) and its files
under ``GET /ui/``. API clients posting to ``/`` are not affected (the protocol layer answers
their calls before any route). The page is a XenAPI client: it logs in over JSON-RPC itself,
so these routes are public (declared so in ``api/rbac.py``) and serve files only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self' ws: wss:; frame-ancestors 'none'"
    ),
}


def ui_routes(
    index: Callable[[], bytes], asset: Callable[[str], tuple[bytes, str] | None]
) -> list[tuple[str, str, Any]]:
    async def root(request: web.Request) -> web.Response:
        if "text/html" not in request.headers.get("Accept", ""):
            return web.Response(status=405, text="POST XML-RPC calls to /, or GET it as a page\n")
        return web.Response(
            body=index(), headers={**SECURITY_HEADERS, "Content-Type": "text/html; charset=utf-8"}
        )

    async def files(request: web.Request) -> web.Response:
        found = asset(request.match_info.get("path", ""))
        if found is None:
            return web.Response(status=404, text="no such file\n")
        body, content_type = found
        headers = {**SECURITY_HEADERS, "Content-Type": content_type, "Cache-Control": "no-cache"}
        return web.Response(body=body, headers=headers)

    return [("GET", "/", root), ("GET", "/ui/{path:.*}", files)]
