"""Message forwarding: per message, the operation it marks and the host that does its work.

This is the one place that decides, from the table :data:`POLICY`, what a call locks: before
the server function runs, each :class:`Mark` of the message is checked against its object's
lifecycle table and recorded in ``current_operations`` (all in one transaction, so a refused
second mark leaves no first one behind); afterwards, success or failure, the marks are removed
and ``allowed_operations`` recomputed. The key of the marks is the call's task (an Async
call's), or a fresh ref for a synchronous call, as in XAPI's ``message_forwarding.ml``.

Then the work's host is found (the VM's ``resident_on``, the host a start is placed on, the
host given, a PBD's or PIF's host; this host when the table names none) and the
:class:`Forwarder` says whether the call runs here or is sent there. Today every host's work
runs here; a pool forwarder replaces :meth:`Forwarder.route`. The server function sees the
same call either way, with ``ctx.work_host`` naming the host. The mechanics (the tables,
marking rows) are :mod:`xenstack.impl.operations`; server functions do local work only.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from ..core.context import Context
from ..core.ids import new_ref
from ..db.store import Database
from ..idl.model import CLASSES, MessageDef
from ..idl.types import NULL_REF
from ..impl import operations
from ..impl.vm.placement import start_host

Values = list[Any]
Finder = Callable[[Database, Values], str]  # the ref a mark or target is about ("" for none)
LOCAL: Literal["local"] = "local"
Route = Literal["local"] | Callable[[str, Values], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Mark:
    """One operation a message marks: ``op`` on the ``cls`` object in parameter ``param``.

    ``via`` names a field of that object leading to the object marked instead (VM.revert marks
    the snapshot's VM ``reverting``); an object that is gone is not marked (the server function
    reports it). ``strict`` says from the arguments whether every check applies (a forced
    VM.pool_migrate skips some).
    """

    cls: str
    param: str
    op: str
    via: str = ""
    strict: Callable[[Values], bool] | None = None


@dataclass(frozen=True, slots=True)
class Where:
    """The host that does a message's work: ``how`` is ``host`` (the parameter is the host),
    ``field`` (the parameter's object's ``field``: a VM's ``resident_on``, a PBD's ``host``),
    ``device`` (the VM of the VBD/VIF in the parameter, then its ``resident_on``) or
    ``placed`` (where a VM.start without a host goes)."""

    how: str
    param: str
    cls: str = ""
    field: str = ""


@dataclass(frozen=True, slots=True)
class Rule:
    marks: tuple[Mark, ...] = ()
    where: Where | None = None


def _unforced(values: Values) -> bool:
    options = values[2]
    return str(options.get("force", "")).lower() not in ("1", "true")


def _vm(op: str, param: str = "vm", where: str = "resident") -> Rule:
    if where == "placed":
        at = Where("placed", param)
    elif where == "host":
        at = Where("host", "host")
    else:
        at = Where("field", param, "VM", "resident_on")
    return Rule((Mark("VM", param, op),), at)


def _device(cls: str, op: str) -> Rule:
    return Rule((Mark(cls, "self", op),), Where("device", "self", cls))


def _on_host_of(cls: str) -> Rule:
    return Rule((), Where("field", "self", cls, "host"))


_MEMORY = {
    "set_memory_limits": "changing_memory_limits",
    "set_memory": "changing_memory_limits",
    **dict.fromkeys(
        ("set_memory_static_range", "set_memory_static_min", "set_memory_static_max"),
        "changing_static_range",
    ),
    **dict.fromkeys(
        ("set_memory_dynamic_range", "set_memory_dynamic_min", "set_memory_dynamic_max"),
        "changing_dynamic_range",
    ),
    "wait_memory_target_live": "awaiting_memory_live",
    "set_VCPUs_max": "changing_VCPUs",
    "set_VCPUs_number_live": "changing_VCPUs_live",
}
_SAME_NAME = [
    "shutdown",
    "clean_shutdown",
    "hard_shutdown",
    "clean_reboot",
    "hard_reboot",
    "pause",
    "unpause",
    "suspend",
    "clone",
    "copy",
    "snapshot",
    "checkpoint",
    "provision",
]

#: wire name -> what the message marks and where its work is done.
POLICY: dict[str, Rule] = {
    "VM.start": _vm("start", where="placed"),
    "VM.start_on": _vm("start_on", where="host"),
    "VM.resume": _vm("resume", where="placed"),
    "VM.resume_on": _vm("resume_on", where="host"),
    **{f"VM.{op}": _vm(op) for op in _SAME_NAME},
    **{f"VM.{name}": _vm(op, "self") for name, op in _MEMORY.items()},
    "VM.get_boot_record": _vm("get_boot_record", "self"),
    "VM.send_trigger": _vm("send_trigger"),
    "VM.revert": Rule(
        (Mark("VM", "snapshot", "revert"), Mark("VM", "snapshot", "reverting", via="snapshot_of")),
        Where("field", "snapshot", "VM", "resident_on"),
    ),
    # the source host does a migration's work, as in XAPI
    "VM.pool_migrate": Rule(
        (Mark("VM", "vm", "pool_migrate", strict=_unforced),),
        Where("field", "vm", "VM", "resident_on"),
    ),
    **{f"VBD.{op}": _device("VBD", op) for op in ("plug", "unplug", "unplug_force")},
    **{f"VIF.{op}": _device("VIF", op) for op in ("plug", "unplug")},
    **{f"{cls}.{op}": _on_host_of(cls) for cls in ("PBD", "PIF") for op in ("plug", "unplug")},
    "host.evacuate": Rule((), Where("host", "host")),
}


class Forwarder:
    """Whether the work on a host runs here or is sent to that host.

    This one runs every host's work here (this toolstack simulates the whole pool); a pool
    member's forwarder answers a callable that makes the call on the host that must do it.
    """

    def route(self, ctx: Context, host: str) -> Route:
        return LOCAL


def _index(msg: MessageDef, name: str) -> int:
    """The parameter's position among the values a server function gets (no session)."""
    names = [p.name for p in (msg.params[1:] if msg.takes_session else msg.params)]
    if name not in names:
        raise ValueError(f"{msg.wire_name} has no parameter {name}")
    return names.index(name)


def _finder(msg: MessageDef, param: str, path: tuple[tuple[str, str], ...] = ()) -> Finder:
    """The ref in parameter ``param``, followed through ``(class, field)`` steps; "" if a step
    leads to no live object."""
    i = _index(msg, param)
    if not path:
        return lambda db, values: str(values[i])

    def follow(db: Database, values: Values) -> str:
        ref = str(values[i])
        for cls, field in path:
            row = db.table(cls).rows.get(ref)
            if row is None:
                return ""
            ref = str(row[field])
            target = CLASSES[cls].fields[field].type.name
            if ref == NULL_REF or not db.exists(target, ref):
                return ""
        return ref

    return follow


def _where(msg: MessageDef, where: Where) -> Finder | None:
    if where.how == "host":
        return _finder(msg, where.param)
    if where.how == "device":
        return _finder(msg, where.param, ((where.cls, "VM"), ("VM", "resident_on")))
    if where.how == "field":
        return _finder(msg, where.param, ((where.cls, where.field),))
    return None  # placed: asked of the placement when the call runs


class Guard:
    """A message's rule bound to the positions of its parameters; wraps its server function."""

    def __init__(self, msg: MessageDef, rule: Rule, forwarder: Forwarder) -> None:
        self.method = msg.wire_name
        self.forwarder = forwarder
        self.marks = [
            (m.cls, _finder(msg, m.param, ((m.cls, m.via),) if m.via else ()), m.op, m.strict)
            for m in rule.marks
        ]
        where = rule.where
        self.where = _where(msg, where) if where is not None else None
        self.placed = _index(msg, where.param) if where and where.how == "placed" else -1

    def enter(self, ctx: Context, values: Values) -> tuple[str, list[tuple[str, str]]]:
        """Check and mark every operation (one transaction); the key and what was marked."""
        key = ctx.task or new_ref()
        held: list[tuple[str, str]] = []
        db = ctx.db
        with db.transaction():
            for cls, find, op, strict in self.marks:
                ref = find(db, values)
                if ref:
                    operations.begin(db, cls, ref, op, key, strict(values) if strict else True)
                    held.append((cls, ref))
        return key, held

    @staticmethod
    def leave(ctx: Context, key: str, held: list[tuple[str, str]]) -> None:
        for cls, ref in reversed(held):
            operations.end(ctx.db, cls, ref, key)

    def run(self, fn: Callable[..., Any], ctx: Context, values: Values) -> Any:
        """Find the work's host and run the call there: here, or through the forwarder."""
        if self.placed >= 0:
            host = start_host(ctx, values[self.placed])
        else:
            host = self.where(ctx.db, values) if self.where is not None else ""
        ctx.work_host = host or ctx.this_host
        route = self.forwarder.route(ctx, ctx.work_host)
        if route == LOCAL:
            return fn(ctx, *values)
        return route(self.method, values)

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` with the marks around it (and async if ``fn`` is)."""
        if inspect.iscoroutinefunction(fn):

            async def guarded(ctx: Context, *values: Any) -> Any:
                key, held = self.enter(ctx, list(values))
                try:
                    return await self.run(fn, ctx, list(values))
                finally:
                    self.leave(ctx, key, held)

            return guarded

        def plain(ctx: Context, *values: Any) -> Any:
            key, held = self.enter(ctx, list(values))
            try:
                result = self.run(fn, ctx, list(values))
            except BaseException:
                self.leave(ctx, key, held)
                raise
            if inspect.isawaitable(result):
                return self._later(ctx, key, held, result)
            self.leave(ctx, key, held)
            return result

        return plain

    async def _later(
        self, ctx: Context, key: str, held: list[tuple[str, str]], result: Awaitable[Any]
    ) -> Any:
        try:
            return await result
        finally:
            self.leave(ctx, key, held)


def guard(msg: MessageDef, fn: Callable[..., Any], forwarder: Forwarder) -> Callable[..., Any]:
    """The server function as the dispatcher calls it: ``fn`` itself, or wrapped by its rule."""
    rule = POLICY.get(msg.wire_name)
    return fn if rule is None else Guard(msg, rule, forwarder).wrap(fn)
