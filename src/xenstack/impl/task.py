"""The task class: cancellation and the bookkeeping clients do on tasks."""

from __future__ import annotations

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


@implements("task.set_status")
def set_status(ctx: Context, self_: str, value: str) -> None:
    with ctx.db.transaction() as db:
        db.set("task", self_, "status", value)


@implements("task.set_progress")
def set_progress(ctx: Context, self_: str, value: float) -> None:
    with ctx.db.transaction() as db:
        db.set("task", self_, "progress", value)


@implements("task.set_result")
def set_result(ctx: Context, self_: str, value: str) -> None:
    with ctx.db.transaction() as db:
        db.set("task", self_, "result", value)


@implements("task.set_error_info")
def set_error_info(ctx: Context, self_: str, value: list[str]) -> None:
    with ctx.db.transaction() as db:
        db.set("task", self_, "error_info", value)
