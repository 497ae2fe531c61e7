"""The HTTP surface beyond the RPC endpoints, each handler behind its RBAC declaration.

Downloads and pages are routes of the web application; uploads (``PUT /import_raw_vdi``,
``PUT /import``) and ``CONNECT /console`` are served straight off the socket. Every one is
guarded by ``api.rbac.http_checker``: the session and the role are checked in one place.
"""

from __future__ import annotations

import functools
from typing import Any

from ..api.rbac import http_checker, pool_http_checker
from ..impl.network.doctor import doctor_routes
from ..impl.storage.vdi_transfer import open_transfer
from ..impl.vm import consoles as vm_consoles
from ..impl.vm.export import open_export
from ..impl.vm.xva_import import open_import
from ..rpc.console_http import guard_connects
from ..rpc.disk_http import disk_routes, disk_upload, guard_routes
from ..rpc.http import HttpConfig
from ..rpc.rrd_http import rrd_routes
from ..rpc.ui_http import ui_routes
from ..rpc.upload import guard_uploads
from ..rpc.vm_http import vm_routes, vm_upload
from ..ui import asset as ui_asset
from ..ui import index as ui_index
from .metrics import rrd_answer


def add_http_surface(toolstack: Any, config: HttpConfig) -> None:
    """Put the toolstack's routes, uploads and CONNECT targets into ``config``."""
    disks = functools.partial(open_transfer, toolstack)
    routes = disk_routes(disks) + vm_routes(functools.partial(open_export, toolstack))
    routes += doctor_routes(toolstack)
    routes += rrd_routes(functools.partial(rrd_answer, toolstack))
    routes += ui_routes(ui_index, ui_asset)
    checker = http_checker(toolstack)  # every handler's RBAC check, by its declared permission
    in_pool = pool_http_checker(toolstack)  # the same, a master's session taken on a member
    config.extra_routes = guard_routes([*config.extra_routes, *routes], in_pool)
    uploads = {
        b"/import_raw_vdi": disk_upload(disks),
        b"/import": vm_upload(functools.partial(open_import, toolstack)),
    }
    config.uploads = guard_uploads(uploads, checker)
    consoles = {b"/console": functools.partial(vm_consoles.open_console, toolstack)}
    config.connects = guard_connects(consoles, checker)
