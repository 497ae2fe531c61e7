"""The table of server functions for explicit XenAPI messages.

Each impl module registers its functions with :func:`implements`; the dispatcher looks them up
by wire name. A message with no function answers NOT_IMPLEMENTED.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..idl.model import message

if TYPE_CHECKING:
    from ..api.context import Context

F = TypeVar("F", bound=Callable[..., Any])
HANDLERS: dict[str, Callable[..., Any]] = {}


def implements(*wire_names: str) -> Callable[[F], F]:
    """Register a function as the implementation of the named messages (``Class.message``)."""

    def register(fn: F) -> F:
        for name in wire_names:
            if message(name) is None:
                raise ValueError(f"{name} is not a XenAPI message")
            HANDLERS[name] = fn
        return fn

    return register


async def call(ctx: Context, name: str, *args: Any) -> Any:
    """Call another class's server function as the API would, awaiting it if needed."""
    result = HANDLERS[name](ctx, *args)
    return await result if inspect.isawaitable(result) else result


def field_setter(cls: str, field: str) -> Callable[..., None]:
    """A server function that sets one field and nothing else (for explicit messages such as
    ``task.set_status`` whose only work is the write; the value is already type-checked)."""

    def set_field(ctx: Any, self_: str, value: Any) -> None:
        with ctx.db.transaction() as db:
            db.set(cls, self_, field, value)

    set_field.__name__ = f"set_{field}"
    return set_field
