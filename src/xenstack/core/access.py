"""Who a session is and which tasks it may touch: the rules below every layer that checks.

The RBAC of API messages and HTTP handlers is ``api.rbac``'s; what it shares with the
layers below lives here, so that impl's tasks and exports check task ownership the same way
without importing the api layer: the local superuser's name, whether a session's role is
among a permission's roles (:func:`allowed`), XAPI's refusal (:func:`denied`), and the task
rule. As XAPI: a task is modified (set, cancelled, destroyed) only by its owner (the session
that made it, or another session of the same user) or by a session with
``task.destroy/any`` (pool-admin, pool-operator).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from ..errors import ApiError
from ..idl.model import ROLES
from .context import Services
from .ids import now

LOCAL_SUPERUSER = "root"  # the user ``xenstack init`` makes, with the host's own password

POOL_OP = frozenset({"pool-admin", "pool-operator"})
TASK_ANY = "task.destroy/any"  # may modify (set, cancel, destroy) any session's tasks


class Caller(Protocol):
    """A live session as the checks see it (``api.auth.SessionInfo``)."""

    @property
    def user(self) -> str: ...

    @property
    def role(self) -> str: ...

    @property
    def local_superuser(self) -> bool: ...


def allowed(info: Caller, roles: frozenset[str]) -> bool:
    """May this session use a permission of these roles? Empty roles: local superuser only."""
    return info.local_superuser or info.role in roles


def denied(permission: str, roles: frozenset[str]) -> ApiError:
    """XAPI's refusal: RBAC_PERMISSION_DENIED with the permission and the roles that have it."""
    names = ", ".join(r for r in ROLES if r in roles)
    return ApiError(
        "RBAC_PERMISSION_DENIED",
        [permission, f"No permission in user session. (Roles with this permission: {names})"],
    )


# ---- tasks -------------------------------------------------------------------------------


def owns_task(toolstack: Services, session: str, task: str) -> bool:
    """Is the task the session's own: made by it, or by another session of the same user?"""
    owner = toolstack.db.get("task", task)["session"]
    if owner == session:
        return True
    mine: Caller | None = toolstack.auth.sessions.get(session)
    theirs: Caller | None = toolstack.auth.sessions.get(owner)
    if mine is None:
        return False
    if theirs is not None:
        return theirs.user == mine.user
    db = toolstack.db  # the owner's session ended: its row may still name its user
    return db.exists("session", owner) and db.get("session", owner)["auth_user_name"] == mine.user


def may_modify_task(toolstack: Services, session: str, task: str) -> bool:
    info = toolstack.auth.sessions.get(session)
    if info is not None and allowed(info, POOL_OP):
        return True
    return owns_task(toolstack, session, task)


def check_task(toolstack: Services, session: str, task: str) -> None:
    """RBAC_PERMISSION_DENIED ``task.destroy/any`` unless the session may modify the task
    (HANDLE_INVALID for an unknown task)."""
    if not may_modify_task(toolstack, session, task):
        raise denied(TASK_ANY, POOL_OP)


def fail_named_task(toolstack: Services, query: Mapping[str, str], err: ApiError) -> None:
    """Settle the pending task a refused request named as failed with ``err``; a task the
    request's session may not modify (or none) is left alone."""
    task, session = query.get("task_id", ""), query.get("session_id", "")
    db = toolstack.db
    if not task or not db.exists("task", task) or db.get("task", task)["status"] != "pending":
        return
    if not may_modify_task(toolstack, session, task):
        return
    with db.transaction():
        db.update(
            "task",
            task,
            status="failure",
            progress=1.0,
            finished=now(),
            result="",
            error_info=err.description,
            allowed_operations=[],
        )
