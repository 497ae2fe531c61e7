"""The table of server functions for explicit XenAPI messages.

Each impl module registers its functions with :func:`implements`; the dispatcher looks them up
by wire name. A message with no function answers NOT_IMPLEMENTED.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..idl.model import MessageDef, ParamDef, message
from ..idl.types import parse_type

F = TypeVar("F", bound=Callable[..., Any])
HANDLERS: dict[str, Callable[..., Any]] = {}
INTERNAL: dict[str, tuple[MessageDef, Callable[..., Any]]] = {}


def implements(*wire_names: str) -> Callable[[F], F]:
    """Register a function as the implementation of the named messages (``Class.message``)."""

    def register(fn: F) -> F:
        for name in wire_names:
            if message(name) is None:
                raise ValueError(f"{name} is not a XenAPI message")
            HANDLERS[name] = fn
        return fn

    return register


def internal(
    wire_name: str, params: str, result: str = "void", *, roles: str = "pool-admin"
) -> Callable[[F], F]:
    """Register a hidden wire method that members of a pool call on each other.

    It is not a XenAPI message: no client sees it (``system.listMethods`` leaves it out) and
    it has no ``Async`` form. ``params`` is ``"type name, ..."`` as in the declaration; a
    method whose first parameter is not ``session ref session_id`` takes no session and must
    authenticate its caller itself (members do so with the pool secret).
    """
    cls, _, name = wire_name.partition(".")
    decl = tuple(
        ParamDef(p.rsplit(" ", 1)[1], parse_type(p.rsplit(" ", 1)[0]))
        for p in (part.strip() for part in params.split(","))
        if p
    )
    msg = MessageDef(cls, name, False, parse_type(result), decl, (), frozenset(roles.split()))

    def register(fn: F) -> F:
        if message(wire_name) is not None:
            raise ValueError(f"{wire_name} is a XenAPI message")
        INTERNAL[wire_name] = (msg, fn)
        return fn

    return register


def field_setter(cls: str, field: str) -> Callable[..., None]:
    """A server function that sets one field and nothing else (for explicit messages such as
    ``task.set_status`` whose only work is the write; the value is already type-checked)."""

    def set_field(ctx: Any, self_: str, value: Any) -> None:
        with ctx.db.transaction() as db:
            db.set(cls, self_, field, value)

    set_field.__name__ = f"set_{field}"
    return set_field
