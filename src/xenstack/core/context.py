"""What a server function gets as ``ctx``: the toolstack's services, the caller's session, its task.

``Context.toolstack`` is typed against :class:`Services`, the narrow part of the toolstack that
server functions use, so this module (and every layer below the composition root) never
imports ``toolstack``; ``xenstack.toolstack.Toolstack`` satisfies the protocol structurally.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..db.persistence import Persistence
from ..db.store import Database
from .clock import Clock
from .config import ToolstackConfig


class Auth(Protocol):
    """Users and live sessions (``api.auth.Authenticator``)."""

    @property
    def sessions(self) -> Mapping[str, Any]: ...

    def users(self) -> Mapping[str, Any]: ...

    def set_user(self, name: str, password: str, role: str = ...) -> None: ...

    async def authenticate(self, username: str, password: str, peer: str) -> Any: ...

    def password_matches(self, user: Any, password: str) -> bool: ...

    def open(self, ref: str, user: Any) -> None: ...

    def close(self, ref: str) -> None: ...

    def check(self, ref: str) -> Any: ...


class Tasks(Protocol):
    """The task rows and the work of Async calls (``api.tasks.TaskManager``)."""

    def create(self, ctx: Context, label: str, description: str = ...) -> str: ...

    def spawn(self, ctx: Context, fn: Callable[..., Any], values: list[Any]) -> str: ...

    def progress(self, task_ref: str | None, fraction: float) -> None: ...

    def cancel(self, task_ref: str) -> None: ...


class Storage(Protocol):
    """The storage service (``impl.storage_service.StorageService``): claims, GC, NBD."""

    @property
    def busy(self) -> Any: ...

    def kick_gc(self) -> None: ...

    async def nbd_info(self, vdi: str, session: str) -> Any: ...

    async def stop_nbd(self, vdi_uuid: str) -> None: ...

    @property
    def attached(self) -> dict[str, bool]: ...

    async def attach(self, vdi: str, writable: bool) -> tuple[str, str]: ...

    async def detach(self, vdi_uuid: str) -> None: ...

    async def reattach(self, vdi_uuid: str) -> None: ...


class Calls(Protocol):
    """Runs a message through the policy layer (``api.dispatch.Dispatcher``)."""

    def invoke(self, ctx: Context, method: str, values: list[Any]) -> Any: ...


class Services(Protocol):
    """What server functions use of the toolstack (``ctx.toolstack``)."""

    this_host: str
    master_address: str

    @property
    def db(self) -> Database: ...

    @property
    def persistence(self) -> Persistence: ...

    @property
    def state_dir(self) -> Path | None: ...

    @property
    def auth(self) -> Auth: ...

    @property
    def tasks(self) -> Tasks: ...

    @property
    def storage(self) -> Storage: ...

    @property
    def server(self) -> Any: ...

    @property
    def config(self) -> ToolstackConfig: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def dispatcher(self) -> Calls: ...

    @property
    def hypervisor(self) -> Any:
        """The ``impl.host.hypervisor.Hypervisor`` around the toolstack's backend (typed
        loosely: core sits below impl; ``impl.host.hypervisor.hypervisor(ctx)`` types it)."""
        ...

    def xenstore(self, host: str) -> Any:
        """The ``xenstore.XenStore`` of ``host`` (typed loosely: core sits below xenstore;
        ``impl.vm.xenstore_nodes.xenstore(ctx, host)`` types it)."""
        ...

    @property
    def switch(self) -> Any:
        """The host's ``net.Switch`` (typed loosely: core sits below net;
        ``impl.network.ports.switch(ctx)`` types it)."""
        ...

    @property
    def rrd(self) -> Any:
        """The ``rrd.store.RrdStore`` of the toolstack's metric archives (typed loosely: core
        sits below rrd; ``impl.host.data_sources.store(ctx)`` types it)."""
        ...

    @property
    def sr_drivers(self) -> Any:
        """The ``storage.sr.registry.SrDrivers`` the toolstack was given (typed loosely: core
        sits below storage; ``impl.storage.sr_backend.drivers(ctx)`` types it)."""
        ...


@dataclass(slots=True)
class Context:
    toolstack: Services
    session: str  # the caller's session ref ("" for login)
    task: str | None = None  # the task of an Async call
    method: str = ""
    # The host whose work this call is, as api's forwarding decided ("" when none decided).
    work_host: str = ""

    @property
    def db(self) -> Database:
        return self.toolstack.db

    @property
    def this_host(self) -> str:
        return self.toolstack.this_host

    def invoke(self, method: str, *values: Any) -> Any:
        """Call ``method`` (no session parameter) through the policy layer, for this caller.

        The answer is the server function's (an awaitable for an async one). The operation the
        message marks is checked and marked as for a call from the wire, as XAPI's helpers call
        Client.* through message forwarding.
        """
        return self.toolstack.dispatcher.invoke(self, method, list(values))

    async def invoke_and_wait(self, method: str, *values: Any) -> Any:
        """:meth:`invoke`, awaiting the answer when the server function is async."""
        result = self.invoke(method, *values)
        return await result if inspect.isawaitable(result) else result
