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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import impl  # noqa: F401  (registers the server functions)
from .api.auth import Authenticator
from .api.dispatch import Dispatcher
from .api.rbac import http_checker
from .api.tasks import TaskManager
from .core.clock import Clock, SystemClock
from .core.config import SESSION_IDLE_TIMEOUT, ToolstackConfig
from .db.etcd import EtcdPersistence
from .db.persistence import MemoryPersistence, Persistence, SqlitePersistence
from .db.store import Database
from .impl.host.hypervisor import Hypervisor
from .impl.host.plugins import inventory, write_inventory
from .impl.host.rrd_feed import DbFeed, record_rates
from .impl.install.bootstrap import create_pool
from .impl.install.storage import use_real_local_storage
from .impl.network.doctor import doctor_routes
from .impl.network.pifs import adopt_pifs
from .impl.network.ports import PortHooks as SwitchPorts
from .impl.network.service import NetworkService
from .impl.pool import ha_runtime
from .impl.pool.remote_backend import attach_members
from .impl.pool.timeline import TimelineBackend
from .impl.storage.service import StorageService
from .impl.storage.vdi_transfer import open_transfer
from .impl.vm import consoles as vm_consoles
from .impl.vm import domains as vm_domains
from .impl.vm import guest_metrics, xenstore_nodes
from .impl.vm.export import open_export
from .impl.vm.xva_import import open_import
from .net import Switch
from .net.ovs import OvsDaemons, OvsSwitch
from .net.simulated import SimulatedSwitch
from .rpc.console_http import guard_connects
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
from .xenops.interface import Backend, PortHooks, XenopsError
from .xenops.simulator import SimulatorBackend
from .xenstore import XenStore, XsError
from .xenstore.server import SocketServer

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


def open_etcd_persistence(state_dir: Path, urls: str) -> Persistence:
    """The host's database in etcd (``--etcd``): its id, made once, is kept in the state."""
    from .db.etcd import EtcdPersistence

    make_private(state_dir)
    id_file = state_dir / "etcd-host-id"
    if not id_file.exists():
        write_secret(id_file, secrets.token_hex(16))
    return EtcdPersistence(urls, id_file.read_text().strip())


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


BACKENDS = ("simulator", "qemu")


def make_backend(
    config: ToolstackConfig,
    state_dir: Path | None = None,
    hooks: PortHooks | None = None,
    name: str = "",
) -> Backend:
    """The backend ``name`` (else ``config.backend``) names, configured from ``config``.

    ``qemu`` keeps its domains' files under ``state_dir`` and plugs VIFs with ``hooks`` (the
    switch's; without them, taps on Linux bridges), in ``config.netns`` if set."""
    name = name or config.backend
    if name == "simulator":
        return SimulatorBackend(guest_agent_delay=config.guest_agent_delay)
    if name == "qemu":
        if state_dir is None:
            raise ValueError("the qemu backend needs a state directory")
        from .xenops.qemu.backend import QemuBackend

        return QemuBackend(str(state_dir), netns=config.netns, hooks=hooks, runas=config.qemu_user)
    raise ValueError(f"no such hypervisor backend: {name!r}")


def make_switch(config: ToolstackConfig, state_dir: Path | None) -> Switch:
    """The switch ``config.switch`` names: ``simulated`` (in memory) or ``openvswitch`` (the
    system's when one runs, else private daemons under ``state_dir/ovs``)."""
    if config.switch == "simulated":
        return SimulatedSwitch()
    if config.switch == "openvswitch":
        if state_dir is None:
            raise ValueError("an Open vSwitch switch needs a state directory")
        daemons = OvsDaemons(state_dir, netns=config.netns, ovsdb_tcp=config.ovsdb_tcp)
        return OvsSwitch(daemons)
    raise ValueError(f"no such switch: {config.switch!r}")


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
        switch: Switch | None = None,
        domain_log: Path | None = None,
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
        self.switch: Switch = switch or make_switch(self.config, self.state_dir)
        self.network = NetworkService(self, self.switch)
        self.xenstores: dict[str, XenStore] = {}
        self.xenstore_server: SocketServer | None = None
        self.background: set[asyncio.Task[None]] = set()
        self.hypervisor = self._make_hypervisor(backend or self._backend(), domain_log)
        attach_members(self)  # a master of member toolstacks sends them their hosts' work
        self.rrd, self.collector = self._make_metrics()
        self.server: RpcServer | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._agents: list[asyncio.Task[None]] = []
        # set by the command line: how to restart this toolstack (a member elected master)
        self.restart: Callable[[], object] | None = None
        self.master_lease = 5.0  # seconds: the TTL of an etcd master's lease
        self.ha: object = None  # this host's HA runtime while armed (impl/pool/ha_runtime)

    def _backend(self) -> Backend:
        """The backend chosen at init (kept in the state) unless the configuration names
        another; real guests' VIFs are plugged into this host's switch when it is Open
        vSwitch (else the qemu backend's own Linux bridges)."""
        stored = self.persistence.get_meta("backend") or ""
        name = self.config.backend if self.config.backend != "simulator" else stored
        hooks = SwitchPorts(self) if isinstance(self.switch, OvsSwitch) else None
        return make_backend(self.config, self.state_dir, hooks, name=name or "simulator")

    def _make_hypervisor(self, backend: Backend, domain_log: Path | None) -> Hypervisor:
        """The Hypervisor around ``backend``, its guests' reports recorded in the database;
        with ``domain_log``, every domain's life journaled there. On etcd the domains are
        adopted once the election has said whose database this is."""
        backend.on_guest_report(functools.partial(guest_metrics.record, self.db, self.clock))
        if getattr(backend, "port_hooks", False) is None:  # the test kit's veth "guests"
            setattr(backend, "port_hooks", SwitchPorts(self))  # noqa: B010
        backend.on_guest_keys(self._guest_key)
        backend.on_domain_exit(functools.partial(vm_domains.domain_exited, self))
        journal = TimelineBackend(backend, domain_log) if domain_log is not None else None
        on_etcd = isinstance(self.persistence, EtcdPersistence)
        hv = Hypervisor(self, journal or backend, adopt=not on_etcd)
        if journal is not None:
            hv.adopted = journal.started
        return hv

    def xenstore(self, host: str) -> XenStore:
        """``host``'s XenStore (made at first use), its guest metrics derived from it."""
        store = self.xenstores.get(host)
        if store is None:
            store = self.xenstores[host] = XenStore()
            guest_metrics.watch(self.db, self.clock, store, host)
            store.dom0_writes.append(functools.partial(self._to_guest, store))
        return store

    def _to_guest(self, store: XenStore, path: str, value: bytes | None) -> None:
        """What dom0 writes for a guest to read (requests, ``vm-data/``, its devices) goes to
        the backend's guest channel too (``Backend.guest_write``)."""
        found = xenstore_nodes.guest_key(store, self.db, path)
        if found is None or value is None:
            return
        vm, key = found
        task = asyncio.get_running_loop().create_task(
            self.hypervisor.backend.guest_write(vm, key, value.decode(errors="replace"))
        )
        task.add_done_callback(_guest_write_done)

    def _guest_key(self, vm_id: str, domid: int, key: str, value: str | None) -> None:
        """A key a guest wrote over its agent channel: written into its host's XenStore as
        that domain, with its rights (a key it may not write is dropped)."""
        row = self.db.table("VM").rows.get(vm_id)
        if row is None or row["domid"] != domid or not self.db.exists("host", row["resident_on"]):
            return
        guest = self.xenstore(row["resident_on"]).as_domain(domid)
        try:
            guest.write(key, value.encode()) if value is not None else guest.rm(key)
        except XsError as exc:
            log.info("guest %s: %s not written: %s", domid, key, exc.name)

    def _make_metrics(self) -> tuple[RrdStore, Collector]:
        """The metric archives (kept in ``STATE/rrd``) and their collector, fed from the
        database and the backend; this host's figures from ``/proc`` unless simulated. Each
        tick's rates keep the ``*_metrics`` records current."""
        store = RrdStore(self.state_dir / "rrd" if self.state_dir is not None else None)
        store.load()
        local = self.hypervisor.simulator is None
        feed = DbFeed(self.db, self.hypervisor, lambda: self.this_host, local)
        vifs = not isinstance(self.switch, OvsSwitch)  # a real switch writes VIF_metrics
        on_tick = lambda rates: record_rates(self.db, self.clock.now(), rates, vifs)  # noqa: E731
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
        pifs: tuple[str, ...] = (),
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
        if pifs:  # PIFs are these kernel devices, and no others
            adopt_pifs(self, self.this_host, pifs)
        if file_storage:
            with self.db.transaction():
                use_real_local_storage(self.db, str(self.state_dir), self.sr_drivers)
        self.persistence.set_meta("this_host", self.this_host)
        if self.state_dir is not None:  # `serve` brings the same backend back
            self.persistence.set_meta("backend", self.hypervisor.backend.capabilities.name)
        return password

    async def start(self, config: HttpConfig) -> None:
        # The loaded database is long-lived: keep the cyclic collector from walking it.
        gc.collect()
        gc.freeze()
        disks = functools.partial(open_transfer, self)
        routes = disk_routes(disks) + vm_routes(functools.partial(open_export, self))
        routes += doctor_routes(self)
        routes += rrd_routes(self._rrd_answer) + ui_routes(ui_index, ui_asset)
        checker = http_checker(self)  # every handler's RBAC check, by its declared permission
        config.extra_routes = guard_routes([*config.extra_routes, *routes], checker)
        uploads = {
            b"/import_raw_vdi": disk_upload(disks),
            b"/import": vm_upload(functools.partial(open_import, self)),
        }
        config.uploads = guard_uploads(uploads, checker)
        consoles = {b"/console": functools.partial(vm_consoles.open_console, self)}
        config.connects = guard_connects(consoles, checker)
        self.server = RpcServer(self.dispatcher.call, config)
        await self.storage.start()  # crash repairs first, before anything is served
        await self.network.start()  # the switch made to hold what the database says
        xenstore_nodes.restore(self)
        if self.state_dir is not None:  # dom0's connection to this host's XenStore
            path = self.state_dir / "run" / "xenstored" / "socket"
            self.xenstore_server = SocketServer(self.xenstore(self.this_host), path)
            await self.xenstore_server.start()
            if self.this_host:
                write_inventory(self.state_dir, inventory(self.db, self.this_host))
        await vm_domains.adopt(self)  # running guests (and their disks' exports) first
        try:
            await self.server.start()
            await self.network.serve_himn(self.server.ports.get("http", 0))
        except BaseException:
            await self.network.stop()
            raise
        await self._refresh_members()
        self._reaper = asyncio.create_task(self._reap_sessions())
        self.collector.start(self.config.rrd_step)
        self._start_election()

    def _start_election(self) -> None:
        """With the database in etcd, the master is elected there (impl/pool/election)."""
        from .impl.pool.election import MasterAgent

        if isinstance(self.persistence, EtcdPersistence):
            agent = MasterAgent(self, self.persistence, self.master_lease, self._restart)
            self.election = agent
            self._agents.append(asyncio.create_task(agent.run()))

    def rearm(self) -> None:
        """HA as it was before a restart (called by the election once the role is known)."""
        later = ha_runtime.resume(self)
        if later is not None:
            self._agents.append(later)

    def _restart(self) -> None:
        if self.restart is not None:
            self.restart()

    def _journal_stop(self) -> None:
        """The simulator's domains end with its process: journal it."""
        backend = self.hypervisor.backend
        while not isinstance(backend, TimelineBackend) and hasattr(backend, "local"):
            backend = backend.local
        if isinstance(backend, TimelineBackend) and self.hypervisor.simulator is not None:
            backend.stop_all()

    async def _refresh_members(self) -> None:
        """Learn what each member's backend runs (a master restarted, or promoted)."""
        pool = attach_members(self)
        if pool is not None:
            await pool.refresh()

    async def stop(self) -> None:
        for agent in self._agents:
            agent.cancel()
        ha = ha_runtime.runtime(self)
        if ha is not None:
            await ha.stop()
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await self.collector.stop()  # the archives saved
        try:
            await self.storage.stop()
            if self.xenstore_server is not None:
                await self.xenstore_server.stop()
            if self.server is not None:
                await self.server.stop()
        finally:  # a private switch's daemons must not outlive the toolstack
            await self.network.stop()
        self._journal_stop()
        await self.hypervisor.backend.close()  # the guests keep running
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


def _guest_write_done(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        if not isinstance(exc, XenopsError):
            log.warning("guest channel: %r", exc)


def write_secret(path: Path, text: str) -> None:
    """Write a file only its owner can read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.chmod(path, 0o600)
