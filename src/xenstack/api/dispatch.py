"""Policy for every call: find the message, check arity, session, role and types, run it.

This is the layer XAPI calls message forwarding. It turns ``(method, params)`` into a call of
the server function for the message (an impl function, or a generic accessor derived from the
declaration), checks that every ``Ref`` parameter names a live object of its declared class,
runs the call under its operation marks and on its host (:mod:`.forwarding`), wraps
``Async.*`` calls in tasks, and answers only once writes are durable.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..core.calls import Origin, Pending
from ..core.context import Context
from ..core.validate import coerce
from ..errors import ApiError, handle_invalid, not_implemented
from ..idl.defaults import PARAM_DEFAULTS
from ..idl.model import CLASSES, MessageDef, ParamDef
from ..idl.types import Record, Type, parse_type
from ..impl.registry import HANDLERS, INTERNAL
from . import rbac
from .accessors import accessor
from .forwarding import Forwarder, guard
from .nullable import NULL_ALLOWED

if TYPE_CHECKING:
    from ..core.context import Services

NO_SESSION = frozenset(
    {
        "session.login_with_password",
        "session.slave_login",
        "session.slave_local_login",
        "session.slave_local_login_with_password",
        "session.login_with_password_v2",
    }
)
# What a pool member (a slave) still answers itself (XAPI's local and emergency calls);
# everything else goes to the master.
SLAVE_ANSWERS = frozenset(
    {
        "session.logout",
        "session.local_logout",
        "session.slave_local_login_with_password",
        "host.emergency_ha_disable",
        "pool.emergency_transition_to_master",
        "pool.emergency_reset_master",
    }
)
_STRINGS = frozenset({"string", "ref"})  # already right when they arrive as str
# Results that are plainly not awaitable: checked by type before the slower protocol check.
_PLAIN = frozenset({Record, str, list, dict, int, bool, float, type(None)})


class Entry:
    """One callable wire method: its declaration and its server function.

    What the call path asks of every call is worked out here once: whether the function
    must be awaited, whether its parameters are all strings (which arrive right as they are),
    and whether it only reads.
    """

    __slots__ = ("defaults", "fn", "msg", "readonly", "refs", "required", "strings", "waits")

    def __init__(
        self, msg: MessageDef, fn: Callable[..., Any] | None, checked: bool = True
    ) -> None:
        self.msg = msg
        self.fn = fn
        self.readonly = "read-only" in msg.roles
        self.waits = inspect.iscoroutinefunction(fn)
        self.strings = all(p.type.kind in _STRINGS for p in msg.params)
        self.refs = ref_params(msg) if checked and fn is not None else ()
        # trailing parameters a caller may leave out (added to the message in later releases)
        self.defaults = tuple(value for _, value in PARAM_DEFAULTS.get(msg.wire_name, ()))
        self.required = len(msg.params) - len(self.defaults)

    def complete(self, method: str, params: list[Any]) -> list[Any]:
        """The parameters with left-out defaults filled in; or MESSAGE_PARAMETER_COUNT_MISMATCH.

        As XAPI counts: neither number includes the session, and the expected count leaves
        out the parameters that have defaults.
        """
        given = len(params)
        if self.required <= given < len(self.msg.params):
            missing = self.defaults[given - self.required :]
            return [*params, *(type(v)(v) if type(v) in (dict, list) else v for v in missing)]
        session = 1 if self.msg.takes_session else 0
        raise ApiError(
            "MESSAGE_PARAMETER_COUNT_MISMATCH", [method, self.required - session, given - session]
        )


def ref_params(msg: MessageDef) -> tuple[tuple[int, str], ...]:
    """(position among the values, class) of the ``Ref`` parameters dispatch checks.

    Not checked: the session (the login check's), parameters that may be NULL
    (:data:`.nullable.NULL_ALLOWED`), and the values of the generic field messages (a ref field
    may be set to NULL; its ``self`` is checked).
    """
    decl = msg.params[1:] if msg.takes_session else msg.params
    return tuple(
        (i, p.type.name)
        for i, p in enumerate(decl)
        if p.type.kind == "ref"
        and p.type.name in CLASSES
        and (not msg.implicit or p.name == "self")
        and (msg.wire_name, p.name) not in NULL_ALLOWED
    )


def _extras(cls: str) -> list[MessageDef]:
    """``get_all_records_where`` and ``get_all_where``: used by clients, absent from the file."""
    cdef = CLASSES[cls]
    base = cdef.messages.get("get_all_records")
    if base is None:
        return []
    params = (base.params[0], ParamDef("expr", parse_type("string")))
    return [
        MessageDef(cls, "get_all_records_where", True, base.result, params, (), base.roles),
        MessageDef(
            cls,
            "get_all_where",
            True,
            Type("set", of=Type("ref", name=cls)),
            params,
            (),
            base.roles,
        ),
    ]


def build_table(forwarder: Forwarder | None = None) -> dict[str, Entry]:
    """Every wire method: explicit messages, accessors and extras, keyed by wire name.

    Each server function is wrapped in its message's policy (marks, host), routed by
    ``forwarder``.
    """
    forwarder = forwarder or Forwarder()
    table: dict[str, Entry] = {}
    for cdef in CLASSES.values():
        for msg in [*cdef.messages.values(), *_extras(cdef.name)]:
            fn = HANDLERS.get(msg.wire_name)
            if fn is None and msg.implicit:
                fn = accessor(cdef, msg)
            table[msg.wire_name] = Entry(msg, guard(msg, fn, forwarder) if fn else None)
    return table


class Dispatcher:
    """Callable by the RPC layer: ``await dispatcher(method, params, origin)``."""

    def __init__(self, toolstack: Services, forwarder: Forwarder | None = None) -> None:
        self.toolstack = toolstack
        self.table = build_table(forwarder)
        self.method_names = sorted(
            [*self.table, *(f"Async.{n}" for n, e in self.table.items() if e.msg.has_async)]
        )
        # Hidden methods between pool members: callable, never listed, never Async.
        # Their refs may name objects of the calling member: the function checks them.
        self.internal = {
            name: Entry(msg, fn, checked=False) for name, (msg, fn) in INTERNAL.items()
        }

    async def __call__(self, method: str, params: list[Any], origin: Origin) -> Any:
        result = self.call(method, params, origin)
        if type(result) is Pending:
            return await result.wait
        return result

    def call(self, method: str, params: list[Any], origin: Origin) -> Any:
        """Run a call as far as it goes without waiting.

        The answer is the call's result, or a :class:`Pending` when the call must wait (for
        I/O, or for its writes to reach the disk). Errors are raised as :class:`ApiError`.
        """
        if method.startswith("system."):
            return self._system(method)
        master = self.toolstack.master_address
        if master and method not in SLAVE_ANSWERS and method not in self.internal:
            raise ApiError("HOST_IS_SLAVE", [master])
        is_async = method.startswith("Async.")
        name = method[6:] if is_async else method
        entry = self.table.get(name) or (None if is_async else self.internal.get(name))
        if entry is None or (is_async and not entry.msg.has_async):
            raise ApiError("MESSAGE_METHOD_UNKNOWN", [method])
        ctx, values = self._arguments(entry, method, name, params, origin, is_async)
        if entry.fn is None:
            raise not_implemented(name)
        if is_async:
            return self.toolstack.tasks.spawn(ctx, self._in_task(entry), values)
        if entry.waits:
            return Pending(self._finish(entry, ctx, entry.fn(ctx, *values)))
        result = entry.fn(ctx, *values)
        if type(result) not in _PLAIN and inspect.isawaitable(result):
            return Pending(self._finish(entry, ctx, result))
        if not entry.readonly:
            return Pending(self._durable(ctx, result))
        return result

    def _arguments(
        self,
        entry: Entry,
        method: str,
        name: str,
        params: list[Any],
        origin: Origin,
        is_async: bool = False,
    ) -> tuple[Context, list[Any]]:
        """Check arity, session and role; coerce the parameters to their declared types; check
        the refs (an Async call's in its task, where XAPI reports a bad handle)."""
        msg = entry.msg
        if len(params) != len(msg.params):
            params = entry.complete(method, params)
        ctx = Context(self.toolstack, "", method=name)
        no_session = name in NO_SESSION
        if msg.takes_session and not no_session:
            ctx.session = params[0]
            info = self.toolstack.auth.check(params[0])
            rbac.check(info, name, msg.roles)  # before the arguments, as XAPI
            args = params[1:]
            decl = msg.params[1:]
        else:
            args = params
            decl = msg.params
        if entry.strings and all(type(v) is str for v in args):
            values = args if args is not params else list(args)
        else:
            values = [
                v if type(v) is str and p.type.kind in _STRINGS else coerce(p.type, v, p.name)
                for p, v in zip(decl, args, strict=True)
            ]
        if entry.refs and not is_async:
            self._check_refs(entry, values)
        if no_session:
            values.append(origin)
        return ctx, values

    def _check_refs(self, entry: Entry, values: list[Any]) -> None:
        """HANDLE_INVALID [class, ref] for a ref parameter that is not a live object of its
        declared class (as XAPI answers when its database lookup of the ref fails)."""
        tables = self.toolstack.db.tables
        for i, cls in entry.refs:
            if values[i] not in tables[cls].rows:
                raise handle_invalid(cls, values[i])

    def _in_task(self, entry: Entry) -> Callable[..., Any]:
        """The server function of an Async call: its refs checked first, inside the task."""
        fn = entry.fn
        assert fn is not None
        if not entry.refs:
            return fn

        def checked(ctx: Context, *values: Any) -> Any:
            self._check_refs(entry, list(values))
            return fn(ctx, *values)

        return checked

    def invoke(self, ctx: Context, method: str, values: list[Any]) -> Any:
        """Run ``method`` for the caller of ``ctx`` (same session and task) under its policy.

        The call hook of every :class:`Context` (``ctx.invoke``): a server function that runs
        another message on another object (host.evacuate migrating each VM) goes through the
        same checks and marks as a call from the wire. Session and role were checked for the
        outer call. The answer is the server function's, an awaitable for an async one.
        """
        entry = self.table.get(method)
        if entry is None or entry.fn is None:
            raise ApiError("MESSAGE_METHOD_UNKNOWN", [method])
        if entry.refs:
            self._check_refs(entry, values)
        inner = Context(self.toolstack, ctx.session, ctx.task, method)
        return entry.fn(inner, *values)

    @staticmethod
    async def _finish(entry: Entry, ctx: Context, result: Awaitable[Any]) -> Any:
        value = await result
        if not entry.readonly:
            await ctx.db.durable()  # answer a write only once it is on disk
        return value

    @staticmethod
    async def _durable(ctx: Context, result: Any) -> Any:
        await ctx.db.durable()
        return result

    def _system(self, method: str) -> Any:
        if method == "system.listMethods":
            return self.method_names
        if method == "system.methodSignature" or method == "system.methodHelp":
            return []
        raise ApiError("MESSAGE_METHOD_UNKNOWN", [method])
