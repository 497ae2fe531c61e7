"""The task class: cancellation and the bookkeeping clients do on tasks."""

from __future__ import annotations

from ..api.context import Context
from .registry import field_setter, implements


@implements("task.cancel")
def cancel(ctx: Context, task: str) -> None:
    ctx.db.get("task", task)
    ctx.toolstack.tasks.cancel(task)


@implements("task.create")
def create(ctx: Context, label: str, description: str) -> str:
    return ctx.toolstack.tasks.create(ctx, label, description)


@implements("task.destroy")
def destroy(ctx: Context, self_: str) -> None:
    with ctx.db.transaction() as db:
        db.destroy("task", self_)


for _field in ("status", "progress", "result", "error_info"):
    implements(f"task.set_{_field}")(field_setter("task", _field))
