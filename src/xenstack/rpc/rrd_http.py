"""XAPI's metric handlers on the wire: ``GET /rrd_updates``, ``/host_rrd``, ``/vm_rrd``,
``/sr_rrd``.

Wire only: the ``answer`` (the composition root's, over the toolstack's archives) gets the
path, the query and the ``Accept`` header and returns the body and its content type; a
ValueError is a bad query (400), a LookupError nothing to show (404). Every route is served
behind its declared permission (``guard_routes``), as XAPI checks the session of each; the
answer carries XAPI's ``Access-Control-Allow-Origin: *``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from .disk_http import _query

Answer = Callable[[str, Mapping[str, str], str | None], tuple[bytes, str]]
PATHS = ("/rrd_updates", "/host_rrd", "/vm_rrd", "/sr_rrd")


def rrd_routes(answer: Answer) -> list[tuple[str, str, Any]]:
    """The aiohttp routes of the metric handlers."""

    async def handle(request: web.Request) -> web.Response:
        path = request.path.rstrip("/")
        try:
            body, content_type = answer(path, _query(request), request.headers.get("Accept"))
        except LookupError as exc:
            return web.Response(status=404, text=f"{exc}\n")
        except ValueError as exc:
            return web.Response(status=400, text=f"{exc}\n")
        headers = {"Content-Type": content_type, "Access-Control-Allow-Origin": "*"}
        return web.Response(body=body, headers=headers)

    return [("GET", path, handle) for path in PATHS]
