"""The task class: cancellation and the bookkeeping clients do on tasks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..api.context import Context
from .registry import implements


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


def _setter(field: str) -> Callable[[Context, str, Any], None]:
    """The server function of ``task.set_<field>``: replace the field (the IDL types ``value``)."""

    def set_field(ctx: Context, self_: str, value: Any) -> None:
        with ctx.db.transaction() as db:
            db.set("task", self_, field, value)

    return set_field


for _field in ("status", "progress", "result", "error_info"):
    implements(f"task.set_{_field}")(_setter(_field))
