"""The Toolstack: one host's database, sessions, tasks, dispatcher, services and server."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from .. import impl  # noqa: F401  (registers the server functions)
from ..api.auth import Authenticator
from ..api.dispatch import Dispatcher
from ..api.tasks import TaskManager
from ..core.clock import Clock, SystemClock
from ..core.config import ToolstackConfig, remembered, to_remember
from ..db.etcd import EtcdPersistence
from ..db.persistence import Persistence
from ..db.store import Database
from ..errors import ApiError
from ..impl.devices import dom0 as dom0_vbds
from ..impl.host.hypervisor import Hypervisor
from ..impl.host.plugins import inventory, write_inventory
from ..impl.install.bootstrap import create_pool
from ..impl.install.storage import use_real_local_storage
from ..impl.network.pifs import adopt_pifs
from ..impl.network.ports import PortHooks as SwitchPorts
from ..impl.network.service import NetworkService
from ..impl.pool import ha_runtime, member_restart
from ..impl.pool.remote_backend import attach_members
from ..impl.pool.timeline import TimelineBackend
from ..impl.storage.service import StorageService
from ..impl.vm import domains as vm_domains
from ..impl.vm import guest_metrics, xenstore_nodes
from ..net import Switch
from ..net.ovs import OvsSwitch
from ..rpc.http import HttpConfig, RpcServer
from ..storage.dom0_attach import Dom0Disks
from ..storage.sr import DEFAULT_DRIVERS, SrDrivers
from ..xenops.interface import Backend
from ..xenstore import XenStore
from ..xenstore.server import SocketServer
from .guests import XenStores
from .metrics import make_metrics
from .parts import make_backend, make_switch
from .routes import add_http_surface
from .state import open_persistence, write_secret

BACKEND_FILE = "backend"  # the backend `init` chose (see Toolstack._kept_backend)

log = logging.getLogger(__name__)

REAP_INTERVAL = 30.0


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
        self.clock: Clock = clock or SystemClock()
        self.sr_drivers: SrDrivers = sr_drivers or DEFAULT_DRIVERS
        self.state_dir = Path(os.path.abspath(state_dir)) if state_dir is not None else None
        self.persistence = persistence or open_persistence(self.state_dir)
        # the switch options init was given come back unless these name others
        self.config = remembered(config or ToolstackConfig(), self.persistence.get_meta)
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
        # VDIs plugged into this host's control domain, as its block devices (impl.devices.dom0)
        self.dom0_disks = Dom0Disks(self.state_dir / "dom0" / "disks") if self.state_dir else None
        self.switch: Switch = switch or make_switch(self.config, self.state_dir)
        self.network = NetworkService(self, self.switch)
        self.xenstores = XenStores(self.db, self.clock, self._running_backend)
        self.xenstore_server: SocketServer | None = None
        self.background: set[asyncio.Task[None]] = set()
        self.hypervisor = self._make_hypervisor(backend or self._backend(), domain_log)
        attach_members(self)  # a master of member toolstacks sends them their hosts' work
        self.rrd, self.collector = make_metrics(self)
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
        stored = self._kept_backend() or self.persistence.get_meta("backend") or ""
        name = self.config.backend if self.config.backend != "simulator" else stored
        hooks = SwitchPorts(self) if isinstance(self.switch, OvsSwitch) else None
        return make_backend(self.config, self.state_dir, hooks, name=name or "simulator")

    def _kept_backend(self) -> str:
        """The backend ``init`` chose, kept in the state directory itself: a host's own
        choice, whichever database (SQLite, or the pool's in etcd) serves it later."""
        if self.state_dir is None:
            return ""
        try:
            return (self.state_dir / BACKEND_FILE).read_text().strip()
        except FileNotFoundError:
            return ""

    def _make_hypervisor(self, backend: Backend, domain_log: Path | None) -> Hypervisor:
        """The Hypervisor around ``backend``, its guests' reports recorded in the database;
        with ``domain_log``, every domain's life journaled there. On etcd the domains are
        adopted once the election has said whose database this is."""
        backend.on_guest_report(functools.partial(guest_metrics.record, self.db, self.clock))
        if getattr(backend, "port_hooks", False) is None:  # the test kit's veth "guests"
            setattr(backend, "port_hooks", SwitchPorts(self))  # noqa: B010
        backend.on_guest_keys(self.xenstores.guest_key)
        backend.on_domain_exit(functools.partial(vm_domains.domain_exited, self))
        journal = TimelineBackend(backend, domain_log) if domain_log is not None else None
        on_etcd = isinstance(self.persistence, EtcdPersistence)
        hv = Hypervisor(self, journal or backend, adopt=not on_etcd)
        if journal is not None:
            hv.adopted = journal.started
        return hv

    def _running_backend(self) -> Backend:
        return self.hypervisor.backend

    def xenstore(self, host: str) -> XenStore:
        """``host``'s XenStore (made at first use), its guest metrics derived from it."""
        return self.xenstores.of(host)

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
        if self.state_dir is not None:  # `serve` brings the same backend and switch back
            name = self.hypervisor.backend.capabilities.name
            self.persistence.set_meta("backend", name)
            write_secret(self.state_dir / BACKEND_FILE, name + "\n")
            kept = to_remember(self.config, self.switch.kind, self.switch.netns)
            for key, value in kept.items():
                self.persistence.set_meta(key, value)
        return password

    async def start(self, config: HttpConfig) -> None:
        # The loaded database is long-lived: keep the cyclic collector from walking it.
        gc.collect()
        gc.freeze()
        add_http_surface(self, config)
        self.server = RpcServer(self.dispatcher.call, config)
        await self.storage.start()  # crash repairs first, before anything is served
        await dom0_vbds.repair(self)  # dom0 devices a killed toolstack left: removed
        await self.network.start()  # the switch made to hold what the database says
        xenstore_nodes.restore(self)
        if self.state_dir is not None:  # dom0's connection to this host's XenStore
            path = self.state_dir / "run" / "xenstored" / "socket"
            self.xenstore_server = SocketServer(self.xenstore(self.this_host), path)
            await self.xenstore_server.start()
            if self.this_host:
                write_inventory(self.state_dir, inventory(self.db, self.this_host))
        await vm_domains.adopt(self)  # running guests (and their disks' exports) first
        await member_restart.readopt(self)  # a member's: the guests its master started here
        started = member_restart.start_time(self)
        try:
            await self.server.start()
            await self.network.serve_himn(self.server.ports.get("http", 0))
        except BaseException:
            await self.network.stop()
            raise
        await self._refresh_members()
        if self.master_address:  # a member: the master learns where it listens now
            self._agents.append(asyncio.create_task(member_restart.announce(self, started)))
        self._reaper = asyncio.create_task(self._reap_sessions())
        self.collector.start(self.config.rrd_step)
        self._start_election()

    def _start_election(self) -> None:
        """With the database in etcd, the master is elected there (impl/pool/election)."""
        from ..impl.pool.election import MasterAgent

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
            await dom0_vbds.release_all(self)  # no dom0 device outlives the toolstack
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
        try:
            await self.db.durable()
        except ApiError as exc:  # etcd gone, or the key lost: what was acknowledged is safe
            log.warning("stopping with writes not made durable: %s", exc)
        finally:
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
