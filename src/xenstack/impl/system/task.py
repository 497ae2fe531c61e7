"""The task class: cancellation and the bookkeeping clients do on tasks.

As XAPI: a session changes, cancels or destroys only its own tasks (made by it or by another
session of the same user) unless it has ``task.destroy/any`` (pool-admin, pool-operator);
otherwise RBAC_PERMISSION_DENIED, and the task is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...core.access import check_task
from ...core.context import Context
from ..registry import field_setter, implements


@implements("task.cancel")
def cancel(ctx: Context, task: str) -> None:
    check_task(ctx.toolstack, ctx.session, task)
    ctx.toolstack.tasks.cancel(task)


@implements("task.create")
def create(ctx: Context, label: str, description: str) -> str:
    return ctx.toolstack.tasks.create(ctx, label, description)


@implements("task.destroy")
def destroy(ctx: Context, self_: str) -> None:
    check_task(ctx.toolstack, ctx.session, self_)
    with ctx.db.transaction() as db:
        db.destroy("task", self_)


def _owned_setter(field: str) -> Callable[..., None]:
    """``task.set_<field>``: the owner's (or a task admin's) write of one field."""
    set_field = field_setter("task", field)

    def set_owned(ctx: Context, self_: str, value: Any) -> None:
        check_task(ctx.toolstack, ctx.session, self_)
        set_field(ctx, self_, value)

    set_owned.__name__ = f"set_{field}"
    return set_owned


for _field in ("status", "progress", "result", "error_info"):
    implements(f"task.set_{_field}")(_owned_setter(_field))
