"""One host's toolstack: the database, sessions, tasks, the dispatcher and the HTTP server.

``Toolstack.initialise(state_dir)`` creates the state (``xenstack init``); ``start`` serves it.
Everything lives under the state directory: ``xapi.db`` (SQLite), ``root-password``, ``tls/``.
The directory is its owner's alone (0700) and so is everything in it: ``xapi.db`` (password
hashes, the pool secret) is created 0600 before SQLite opens it (its -wal and -shm take its
mode), and a state found with group or other access has it taken away at start. The directory
is kept as an absolute path, since SR paths under it are stored.

This is the composition root: every dependency of the layers below is made or received here
and handed down, never looked up. A ``Toolstack`` is given

- ``config``: a :class:`ToolstackConfig` (timeouts, plug-in and extension directories, the
  backend's name and the simulator's guest-agent delay). The command line and the test kit
  build it from their options and the ``XENSTACK_*`` environment
  (:func:`xenstack.core.config.from_environment`); nothing below reads the environment.
- ``backend``: the hypervisor backend (a :class:`xenstack.xenops.interface.Backend`), by
  default the one :func:`make_backend` builds from ``config.backend``. A backend is given
  nothing but calls: hosts (``host_add``) as the database names them, domain specs to build,
  and one listener (``on_guest_report``) that records what its guests' agents report. It
  never sees the database. ``xenstack serve --backend NAME`` will set ``config.backend``;
  :func:`make_backend` maps each name to its constructor (``"simulator"`` only, for now: a
  QEMU backend adds its name there and nothing else changes).
- ``clock``: a :class:`xenstack.core.clock.Clock` for the dates the toolstack stamps (tasks,
  messages, sessions, guest metrics); :class:`SystemClock` by default, a
  ``xenstack.testing.FakeClock`` in tests.
- ``sr_drivers``: the :class:`xenstack.storage.sr.SrDrivers` registry, SR driver kind ->
  factory, that builds every SR's driver (``impl.storage.sr_backend.driver_of`` asks it,
  reached as ``ctx.toolstack.sr_drivers``); by default
  :data:`~xenstack.storage.sr.DEFAULT_DRIVERS`: ``file``, ``shared``, ``iso`` and ``sizes``
  (the sizes-only simulated SRs, and every SR whose ``sm_config`` names no kind). A real
  LVM or NFS driver is one more kind in the registry given here.

The toolstack makes its :class:`Hypervisor` from the backend (``impl.host.hypervisor``
reaches it as ``hypervisor(ctx)``, i.e. ``ctx.toolstack.hypervisor``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from . import impl  # noqa: F401  (registers the server functions)
from .api.auth import Authenticator
from .api.dispatch import Dispatcher
from .api.rbac import http_checker
from .api.tasks import TaskManager
from .core.clock import Clock, SystemClock
from .core.config import SESSION_IDLE_TIMEOUT, ToolstackConfig
from .db.persistence import MemoryPersistence, Persistence, SqlitePersistence
from .db.store import Database
from .impl.host.hypervisor import Hypervisor
from .impl.host.rrd_feed import DbFeed, record_rates
from .impl.install.bootstrap import create_pool
from .impl.install.storage import use_real_local_storage
from .impl.storage.service import StorageService
from .impl.storage.vdi_transfer import open_transfer
from .impl.vm import guest_metrics
from .impl.vm.export import open_export
from .impl.vm.xva_import import open_import
from .rpc.disk_http import disk_routes, disk_upload, guard_routes
from .rpc.http import HttpConfig, RpcServer
from .rpc.rrd_http import rrd_routes
from .rpc.ui_http import ui_routes
from .rpc.upload import guard_uploads
from .rpc.vm_http import vm_routes, vm_upload
from .rrd import query as rrd_query
from .rrd.collector import Collector
from .rrd.store import RrdStore
from .storage.sr import DEFAULT_DRIVERS, SrDrivers
from .ui import asset as ui_asset
from .ui import index as ui_index
from .xenops.interface import Backend
from .xenops.simulator import SimulatorBackend

log = logging.getLogger(__name__)

__all__ = ["SESSION_IDLE_TIMEOUT", "Toolstack", "ToolstackConfig", "make_backend"]

REAP_INTERVAL = 30.0


PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def open_persistence(state_dir: Path | None) -> Persistence:
    if state_dir is None:
        return MemoryPersistence()
    make_private(state_dir)
    database = state_dir / "xapi.db"
    os.close(os.open(database, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE))  # before SQLite does
    return SqlitePersistence(database)


def make_private(state_dir: Path) -> None:
    """Create ``state_dir`` 0700, or take group and other access from it and all it holds.

    Symbolic links are left alone (a link may point out of the state, e.g. to a plug-in).
    """
    state_dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    os.chmod(state_dir, PRIVATE_DIR)
    for root, dirs, files in os.walk(state_dir):
        for name in (*dirs, *files):
            path = os.path.join(root, name)
            mode = os.lstat(path).st_mode
            if not stat.S_ISLNK(mode) and mode & 0o077:
                os.chmod(path, stat.S_IMODE(mode) & ~0o077)


def make_backend(config: ToolstackConfig) -> Backend:
    """The backend ``config.backend`` names, configured from ``config``."""
    if config.backend == "simulator":
        return SimulatorBackend(guest_agent_delay=config.guest_agent_delay)
    raise ValueError(f"no such hypervisor backend: {config.backend!r}")


class Toolstack:
    """The running toolstack of one host (or of a whole simulated pool).

    ``session_timeout``, when given, overrides ``config.session_timeout`` (older callers).
    """

    def __init__(
        self,
        state_dir: Path | None,
        *,
        config: ToolstackConfig | None = None,
        backend: Backend | None = None,
        clock: Clock | None = None,
        persistence: Persistence | None = None,
        session_timeout: float | None = None,
        sr_drivers: SrDrivers | None = None,
    ) -> None:
        self.config = config or ToolstackConfig()
        self.clock: Clock = clock or SystemClock()
        self.sr_drivers: SrDrivers = sr_drivers or DEFAULT_DRIVERS
        self.state_dir = Path(os.path.abspath(state_dir)) if state_dir is not None else None
        self.persistence = persistence or open_persistence(self.state_dir)
        self.db = Database(self.persistence)
        self.db.load()
        timeout = self.config.session_timeout if session_timeout is None else session_timeout
        self.auth = Authenticator(self.persistence, timeout, self.clock)
        self.tasks = TaskManager(self)
        self.this_host = self.persistence.get_meta("this_host") or ""
        # Set while this host is a pool member (a slave): the master's address.
        slave = self.persistence.get_meta("pool_role") == "slave"
        self.master_address = (self.persistence.get_meta("master_address") or "") if slave else ""
        self.dispatcher = Dispatcher(self)
        self.storage = StorageService(self)
        self.hypervisor = self._make_hypervisor(backend or make_backend(self.config))
        self.rrd, self.collector = self._make_metrics()
        self.server: RpcServer | None = None
        self._reaper: asyncio.Task[None] | None = None

    def _make_hypervisor(self, backend: Backend) -> Hypervisor:
        """The Hypervisor around ``backend``, its guests' reports recorded in the database."""
        backend.on_guest_report(functools.partial(guest_metrics.record, self.db, self.clock))
        return Hypervisor(self, backend)

    def _make_metrics(self) -> tuple[RrdStore, Collector]:
        """The metric archives (kept in ``STATE/rrd``) and their collector, fed from the
        database and the backend; this host's figures from ``/proc`` unless simulated. Each
        tick's rates keep the ``*_metrics`` records current."""
        store = RrdStore(self.state_dir / "rrd" if self.state_dir is not None else None)
        store.load()
        local = self.hypervisor.simulator is None
        feed = DbFeed(self.db, self.hypervisor, lambda: self.this_host, local)
        on_tick = lambda rates: record_rates(self.db, self.clock.now(), rates)  # noqa: E731
        return store, Collector(store, feed, on_tick=on_tick)

    def _rrd_answer(self, path: str, query: Any, accept: str | None) -> tuple[bytes, str]:
        host = self.db.table("host").rows.get(self.this_host)
        host_uuid = str(host["uuid"]) if host else ""
        if path == "/rrd_updates":
            return rrd_query.rrd_updates(self.rrd, host_uuid, query, accept)
        if path == "/host_rrd":
            return rrd_query.whole_rrd(self.rrd, "host", host_uuid)
        owner = "vm" if path == "/vm_rrd" else "sr"
        return rrd_query.whole_rrd(self.rrd, owner, query.get("uuid", ""))

    @property
    def initialised(self) -> bool:
        return bool(self.this_host)

    def initialise(
        self,
        password: str | None = None,
        hosts: int = 1,
        *,
        shared_sr: bool = False,
        sim_storage: bool = False,
    ) -> str:
        """Create the pool (``hosts`` hosts) and the root user; return the root password.

        With a state directory, SRs keep real VHD files (Local storage per host and, with
        ``shared_sr``, a shared NFS-like directory SR); ``sim_storage`` (``--sim-storage``)
        keeps every SR sizes-only instead, for very large simulated pools.
        """
        if self.initialised:
            raise RuntimeError("the state is initialised already")
        password = password or secrets.token_urlsafe(18)
        self.auth.set_user("root", password, "pool-admin")
        file_storage = self.state_dir is not None and not sim_storage
        self.persistence.set_meta("storage", "file" if file_storage else "simulated")
        self.this_host = create_pool(self.db, hosts=hosts, shared_sr=shared_sr)
        if file_storage:
            with self.db.transaction():
                use_real_local_storage(self.db, str(self.state_dir), self.sr_drivers)
        self.persistence.set_meta("this_host", self.this_host)
        return password

    async def start(self, config: HttpConfig) -> None:
        # The loaded database is long-lived: keep the cyclic collector from walking it.
        gc.collect()
        gc.freeze()
        disks = functools.partial(open_transfer, self)
        routes = disk_routes(disks) + vm_routes(functools.partial(open_export, self))
        routes += rrd_routes(self._rrd_answer) + ui_routes(ui_index, ui_asset)
        checker = http_checker(self)  # every handler's RBAC check, by its declared permission
        config.extra_routes = guard_routes([*config.extra_routes, *routes], checker)
        uploads = {
            b"/import_raw_vdi": disk_upload(disks),
            b"/import": vm_upload(functools.partial(open_import, self)),
        }
        config.uploads = guard_uploads(uploads, checker)
        self.server = RpcServer(self.dispatcher.call, config)
        await self.storage.start()  # crash repairs first, before anything is served
        await self.server.start()
        self._reaper = asyncio.create_task(self._reap_sessions())
        self.collector.start(self.config.rrd_step)

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await self.collector.stop()
        await self.storage.stop()
        if self.server is not None:
            await self.server.stop()
        for job in list(self.tasks.running.values()):
            job.cancel()
        await self.db.durable()
        self.persistence.close()

    async def _reap_sessions(self) -> None:
        while True:
            await asyncio.sleep(min(REAP_INTERVAL, self.auth.idle_timeout))
            expired = self.auth.expired()
            for ref in expired:
                self.auth.close(ref)
            live = [r for r in expired if self.db.exists("session", r)]
            if live:
                with self.db.transaction() as db:
                    for ref in live:
                        db.destroy("session", ref)


def write_secret(path: Path, text: str) -> None:
    """Write a file only its owner can read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.chmod(path, 0o600)
