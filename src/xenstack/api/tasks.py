"""``Async.*`` calls as XenAPI tasks: pending, then success, failure or cancelled.

A task's ``result`` is the XML-RPC ``<value>`` text of the call's result, as XAPI stores it;
``error_info`` is the error's code and parameters. Tasks are rows of the ``task`` class, so
``event.from`` sees them change.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core.context import Context
from ..core.ids import new_ref, new_uuid
from ..core.xmlrpc_values import value_text
from ..errors import ApiError
from ..idl.types import NULL_REF

if TYPE_CHECKING:
    from ..core.context import Services

log = logging.getLogger(__name__)


class TaskManager:
    """Creates task rows and runs their work in the background."""

    def __init__(self, toolstack: Services) -> None:
        self.toolstack = toolstack
        self.running: dict[str, asyncio.Task[None]] = {}

    def create(self, ctx: Context, label: str, description: str = "") -> str:
        ref = new_ref()
        with ctx.db.transaction() as db:
            db.create(
                "task",
                ref,
                {
                    "uuid": new_uuid(),
                    "name_label": label,
                    "name_description": description,
                    "status": "pending",
                    "created": self.toolstack.clock.now(),
                    "resident_on": ctx.this_host,
                    "session": ctx.session if ctx.session else NULL_REF,
                    "allowed_operations": ["cancel"],
                },
            )
        return ref

    def spawn(self, ctx: Context, fn: Callable[..., Any], values: list[Any]) -> str:
        """Start ``fn(ctx, *values)`` as a task; return the task ref at once."""
        task_ref = self.create(ctx, f"Async.{ctx.method}")
        ctx.task = task_ref
        job = asyncio.create_task(self._run(ctx, task_ref, fn, values))
        self.running[task_ref] = job
        job.add_done_callback(lambda _: self.running.pop(task_ref, None))
        return task_ref

    async def _run(
        self, ctx: Context, task_ref: str, fn: Callable[..., Any], values: list[Any]
    ) -> None:
        try:
            result = fn(ctx, *values)
            if inspect.isawaitable(result):
                result = await result
            if ctx.db.generation:
                await ctx.db.durable()
        except asyncio.CancelledError:
            self._finish(task_ref, status="cancelled", error=["TASK_CANCELLED", task_ref])
            return
        except ApiError as err:
            self._finish(task_ref, status="failure", error=err.description)
            return
        except Exception as exc:
            log.exception("task %s failed", task_ref)
            self._finish(task_ref, status="failure", error=["INTERNAL_ERROR", str(exc)])
            return
        self._finish(
            task_ref, status="success", result=value_text(result) if result is not None else ""
        )

    def _finish(
        self, task_ref: str, *, status: str, result: str = "", error: list[str] | None = None
    ) -> None:
        db = self.toolstack.db
        if not db.exists("task", task_ref):
            return
        with db.transaction():
            db.update(
                "task",
                task_ref,
                status=status,
                result=result,
                error_info=error or [],
                progress=1.0,
                finished=self.toolstack.clock.now(),
                allowed_operations=[],
            )

    def progress(self, task_ref: str | None, fraction: float) -> None:
        if task_ref and self.toolstack.db.exists("task", task_ref):
            with self.toolstack.db.transaction() as db:
                db.set("task", task_ref, "progress", max(0.0, min(1.0, fraction)))

    def cancel(self, task_ref: str) -> None:
        job = self.running.get(task_ref)
        if job is None:
            status = self.toolstack.db.get("task", task_ref)["status"]
            raise ApiError("OPERATION_NOT_ALLOWED", [f"task is {status}, it cannot be cancelled"])
        with self.toolstack.db.transaction() as db:
            db.set("task", task_ref, "status", "cancelling")
        job.cancel()
