"""Who may do what: the one place that decides, for API messages and for HTTP handlers.

As XAPI's RBAC: a permission is a message's lowercase wire name (``vm.set_name_label``) or
``http/<action>`` for an HTTP handler; a session may use it when its role is among the
permission's roles. The local superuser (``root``, whose password is the host's own) may do
everything. An empty role list (XAPI's ``_R_LOCAL_ROOT_ONLY``) means the local superuser
only: every other session is refused, pool-admins included.

HTTP handlers declare their permission in :data:`HTTP_ACTIONS` (as XAPI's datamodel
declares ``http_actions``); a path with no declaration cannot be served (see
:func:`http_action`). Tasks are modified only by their owner (the session that made them, or
another session of the same user) or by a session with ``task.destroy/any``: that rule, and
the role check it shares with this module, are ``core.access``'s, where impl uses them too.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core.access import allowed, denied, fail_named_task
from ..errors import ApiError
from ..idl.model import ROLES
from ..impl.pool.member_sessions import master_session
from .auth import SessionInfo

if TYPE_CHECKING:
    from ..core.context import Services

VM_ADMIN = frozenset({"pool-admin", "pool-operator", "vm-power-admin", "vm-admin"})
READ_ONLY = frozenset(ROLES)  # every role
VM_OPERATOR = VM_ADMIN | {"vm-operator"}
LOCAL_ROOT_ONLY: frozenset[str] = frozenset()
NETWORK_ADMIN = frozenset({"pool-admin", "pool-operator"})

HTTP_PREFIX = "http/"
_PATTERN = re.compile(r"\{(\w+):[^}]*\}")


@dataclass(frozen=True, slots=True)
class HttpAction:
    """One HTTP handler's declaration: XAPI's name for it, its method and path, its roles."""

    name: str
    method: str
    path: str
    roles: frozenset[str]
    public: bool = False  # served without a session (the UI's own files: its login page)

    @property
    def permission(self) -> str:
        return HTTP_PREFIX + self.name


_DECLARED = (
    HttpAction("put_import", "PUT", "/import", VM_ADMIN),
    HttpAction("put_import_raw_vdi", "PUT", "/import_raw_vdi", VM_ADMIN),
    HttpAction("get_export", "GET", "/export", VM_ADMIN),
    HttpAction("get_export_raw_vdi", "GET", "/export_raw_vdi", VM_ADMIN),
    # xenstack's own: the network doctor's report on a VM's VIFs (impl/network/doctor.py)
    HttpAction("get_network_doctor", "GET", "/network_doctor", NETWORK_ADMIN),
    HttpAction("connect_console", "CONNECT", "/console", VM_OPERATOR),  # a VM's console (RFB)
    # The metrics (XAPI: read-only, with a session)
    HttpAction("get_rrd_updates", "GET", "/rrd_updates", READ_ONLY),
    HttpAction("get_host_rrd", "GET", "/host_rrd", READ_ONLY),
    HttpAction("get_vm_rrd", "GET", "/vm_rrd", READ_ONLY),
    HttpAction("get_sr_rrd", "GET", "/sr_rrd", READ_ONLY),
    # The browser UI's page and files, as XAPI serves XO Lite: a client that logs in itself
    HttpAction("get_root", "GET", "/", READ_ONLY, public=True),
    HttpAction("get_ui", "GET", "/ui/{path}", READ_ONLY, public=True),
    # The API itself: every call is checked against its message's roles by the dispatcher.
    HttpAction("post_root", "POST", "/", READ_ONLY),
    HttpAction("post_RPC2", "POST", "/RPC2", READ_ONLY),
    HttpAction("post_jsonrpc", "POST", "/jsonrpc", READ_ONLY),
)
HTTP_ACTIONS: dict[tuple[str, str], HttpAction] = {(a.method, a.path): a for a in _DECLARED}


def http_action(method: str, path: str) -> HttpAction:
    """The declaration of ``method path`` (a trailing ``/`` ignored); LookupError if none, so
    that a handler cannot be served without a declared permission."""
    path = _PATTERN.sub(r"{\1}", path)  # "/ui/{path:.*}" is declared as "/ui/{path}"
    key = (method.upper(), path.rstrip("/") or "/")
    action = HTTP_ACTIONS.get(key)
    if action is None:
        raise LookupError(f"HTTP handler {method} {path} has no declared permission")
    return action


def check(info: SessionInfo, permission: str, roles: frozenset[str]) -> None:
    """Raise RBAC_PERMISSION_DENIED unless the session may use the permission."""
    if not allowed(info, roles):
        raise denied(permission.lower(), roles)


# ---- HTTP handlers -----------------------------------------------------------------------


def authorize_http(
    toolstack: Services,
    action: HttpAction,
    query: Mapping[str, str],
    info: SessionInfo | None = None,
) -> None:
    """Check the request's session (``info``: as already found) and role against the
    handler's declaration.

    SESSION_INVALID for a missing or dead session, RBAC_PERMISSION_DENIED for a role that
    lacks the permission. A refused request that names a ``task_id`` fails that task with the
    error (when the request's session may modify it), so that nothing waits on it forever.
    """
    if action.public:
        return
    try:
        if info is None:
            info = toolstack.auth.check(query.get("session_id", ""))
        check(info, action.permission, action.roles)
    except ApiError as err:
        fail_named_task(toolstack, query, err)
        raise


async def authorize_http_in_pool(
    toolstack: Services, action: HttpAction, query: Mapping[str, str]
) -> None:
    """:func:`authorize_http`, where a pool member also takes a session of its master's
    (sessions are pool-wide, as XAPI's): one it does not know is asked of the master
    (``impl/pool/member_sessions.py``), and the declared permission checked here."""
    info = None
    if toolstack.master_address and not action.public:
        session = query.get("session_id", "")
        try:
            info = toolstack.auth.check(session)
        except ApiError:
            with contextlib.suppress(ApiError):  # refused there too: the check below says so
                user, role, superuser = await master_session(toolstack, session)
                info = SessionInfo(user, role, 0.0, local_superuser=superuser)
    authorize_http(toolstack, action, query, info)


def pool_http_checker(
    toolstack: Services,
) -> Callable[[str, str], Callable[[Mapping[str, str]], Awaitable[None]]]:
    """:func:`http_checker` for the web application's routes, whose checks may wait: on a
    pool member, a master's session is checked with the master."""

    def checker(method: str, path: str) -> Callable[[Mapping[str, str]], Awaitable[None]]:
        return functools.partial(authorize_http_in_pool, toolstack, http_action(method, path))

    return checker


def http_checker(toolstack: Services) -> Callable[[str, str], Callable[[Mapping[str, str]], None]]:
    """For the HTTP server: ``checker(method, path)`` is the check of that handler's declared
    permission (LookupError when it has none)."""

    def checker(method: str, path: str) -> Callable[[Mapping[str, str]], None]:
        return functools.partial(authorize_http, toolstack, http_action(method, path))

    return checker
