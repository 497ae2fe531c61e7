"""A toolstack's storage services: VDI claims, the background GC and the NBD exports.

``claims`` keeps the VDIs (by file uuid) that long work is using: disk transfers, copies
and the GC's merges. Operations that change a VDI's chain refuse a claimed VDI, and the GC
leaves a tree alone while any of its VDIs is claimed.

NBD, as XAPI serves it: only VDIs that ``VDI.get_nbd_info`` handed out are exported (one
server each, on TCP and on a Unix socket), under the export name ``/<vdi-uuid>?session_id=
<session ref>``. Each connection is authorised when it names the export: the session must be
live, the VDI the one this server exports, and the session's role decides the access (the
roles that may call ``VDI.get_nbd_info`` write; any other live session reads only).

The disks of running domains are exports too (:meth:`StorageService.attach`): the
hypervisor opens ``/<vdi-uuid>?attach=<token>`` on the Unix socket, where the token is an
HMAC of the uuid under a key kept in the state (``nbd-attach.key``, 0600), so the name stays
the same across toolstack restarts and QEMU's reconnects find it again. The exports of the
attached disks of every running VM come back when the toolstack starts
(:meth:`StorageService.export_attached`), and an export whose chain changed under a running
guest (a snapshot) is started again on the new chain at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import ssl
import stat
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.x509.oid import NameOID

from ...core.context import Context
from ...core.tls import ensure_certificate
from ...errors import ApiError
from ...idl.model import message
from ...storage import nbd_protocol
from ...storage.nbd import NbdGrant, NbdRefused, NbdServer, VhdBackend, serve_nbd
from ...storage.sr import FileSr
from ...storage.sr.gc import GcResult, collect, gc_active, recover_sr
from ...storage.vhd import VhdImage
from .sr_backend import driver_of, drivers
from .sr_usage import refresh_usage
from .vdi_files import refresh_parents

log = logging.getLogger(__name__)

GC_INTERVAL = 60.0


class Claims:
    """A thread-safe multiset of claimed VDI file uuids; the GC's claims are told apart."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._held: Counter[str] = Counter()
        self._gc: set[str] = set()

    def held_by_gc_only(self, uuid: str) -> bool:
        with self.lock:
            return uuid in self._gc and self._held[uuid] == 1

    def __contains__(self, uuid: object) -> bool:
        with self.lock:
            return self._held[str(uuid)] > 0

    def try_claim(self, uuids: list[str]) -> bool:
        with self.lock:
            if any(self._held[u] for u in uuids):
                return False
            self._held.update(uuids)
            return True

    def add(self, uuid: str) -> None:
        with self.lock:
            self._held[uuid] += 1

    def discard(self, uuid: str) -> None:
        with self.lock:
            self._held[uuid] -= 1
            if self._held[uuid] <= 0:
                del self._held[uuid]

    def gc_claim(self, uuids: list[str]) -> bool:
        """The GC's claim: like try_claim, but others may wait for it to end."""
        with self.lock:
            if any(self._held[u] for u in uuids):
                return False
            self._held.update(uuids)
            self._gc.update(uuids)
            return True

    def gc_release(self, uuid: str) -> None:
        with self.lock:
            self._gc.discard(uuid)
        self.discard(uuid)

    async def claim_waiting_for_gc(self, uuid: str, timeout: float = 60.0) -> bool:
        """Claim ``uuid``, waiting while only the GC holds it; False if another user does."""
        deadline = time.monotonic() + timeout
        while not self.try_claim([uuid]):
            if not self.held_by_gc_only(uuid) or time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    @contextlib.contextmanager
    def holding(self, uuid: str) -> Iterator[None]:
        self.add(uuid)
        try:
            yield
        finally:
            self.discard(uuid)


class StorageService:
    """Per toolstack: claims, the GC task, and NBD exports (one server per exported VDI)."""

    def __init__(self, toolstack: Any) -> None:
        self.toolstack = toolstack
        self.busy = Claims()
        self._wake: asyncio.Event | None = None
        self._gc_task: asyncio.Task[None] | None = None
        self._gc_lock: asyncio.Lock | None = None
        self._nbd: dict[str, tuple[list[NbdServer], VhdImage, int, str]] = {}
        self._socket_access: dict[str, tuple[int, int]] = {}  # (gid, mode) of a stopped export
        self._tls: tuple[ssl.SSLContext, str, str] | None = None  # context, cert PEM, subject
        self.attached: dict[str, bool] = {}  # VDI uuid -> writable, exported to domains
        self._pending: dict[str, str] = {}  # deferred exports (see attach_file): key -> path
        self._attach_key: bytes | None = None
        # a master's: its members' exports of the pool's disks (impl.pool.member_exports)
        self.elsewhere: Any = None

    async def start(self) -> None:
        """Repair what a crash left in the local SRs, then start the GC (before anything is
        served: repairs must not race the operations they cannot tell from a crash's)."""
        await asyncio.to_thread(self._recover_local_srs)
        self._wake = asyncio.Event()
        self._gc_lock = asyncio.Lock()
        self._gc_task = asyncio.create_task(self._gc_loop())
        self.kick_gc()  # a first pass at once: what the repairs left to merge

    def _local_file_srs(self) -> Iterator[tuple[str, FileSr]]:
        if self.toolstack.master_address:
            # a pool member: its SRs are the pool's now (the joiner's went over to the
            # master, files and all), repaired and collected by the master's storage alone
            return
        db, registry = self.toolstack.db, drivers(self.toolstack)
        for sr, row in list(db.table("SR").rows.items()):
            drv = driver_of(registry, db, row)
            if isinstance(drv, FileSr) and os.path.isdir(drv.directory):
                yield sr, drv

    def _recover_local_srs(self) -> None:
        for _, drv in self._local_file_srs():
            try:
                recover_sr(drv)
            except Exception:
                log.exception("repairing SR %s failed", drv.directory)

    async def stop(self) -> None:
        if self._gc_task is not None:
            self._gc_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._gc_task
        for vdi_uuid in list(self._nbd):
            await self.stop_nbd(vdi_uuid)

    def kick_gc(self) -> None:
        """Ask the background GC for a pass soon (after a VDI was destroyed)."""
        if self._wake is not None:
            self._wake.set()

    async def _gc_loop(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), GC_INTERVAL)
            self._wake.clear()
            try:
                await self.run_gc()
            except Exception:
                log.exception("storage GC pass failed")

    async def run_gc(self) -> dict[str, GcResult]:
        """One full GC over every local file SR, now; returns what was done, per SR ref."""
        assert self._gc_lock is not None, "the storage service is not started"
        db = self.toolstack.db
        done: dict[str, GcResult] = {}
        async with self._gc_lock:
            for sr, drv in self._local_file_srs():
                done[sr] = await asyncio.to_thread(self._collect, db.get("SR", sr)["uuid"], drv)
                if db.exists("SR", sr):
                    merged = bool(done[sr].deleted or done[sr].coalesced)
                    with db.transaction():
                        refresh_parents(drivers(self.toolstack), db, sr, merged=merged)
                        refresh_usage(drivers(self.toolstack), db, sr)
        return done

    def gc_lock_dir(self) -> str | None:
        """Where each SR's ``gc_active`` lock lives (SM's ``/var/lock/sm``): ``STATE/run/sm``."""
        state = self.toolstack.state_dir
        return os.path.join(str(state), "run", "sm") if state is not None else None

    def _collect(self, sr_uuid: str, drv: FileSr) -> GcResult:
        lock_dir = self.gc_lock_dir()
        if lock_dir is None:
            return collect(drv, self.busy, recovering=False)
        with gc_active(lock_dir, sr_uuid):
            return collect(drv, self.busy, recovering=False)

    def nbd_socket(self, vdi_uuid: str) -> str:
        """The Unix socket of a VDI's NBD export: ``<state>/nbd/<uuid>.sock``, or with the
        uuid cut to its first group when the full path would pass the 107-byte limit."""
        assert self.toolstack.state_dir is not None
        path = os.path.join(str(self.toolstack.state_dir), "nbd", vdi_uuid + ".sock")
        if len(path.encode()) > 107:
            path = os.path.join(os.path.dirname(path), vdi_uuid.split("-")[0] + ".sock")
        return path

    async def nbd_info(self, vdi: str, session: str) -> dict[str, Any]:
        """The vdi_nbd_server_info of ``vdi`` for ``session``, starting its export if needed.

        The export name carries the session (``/<uuid>?session_id=<ref>``, as XAPI's).
        The export writes into the VDI's leaf unless the VDI is read-only or a snapshot;
        a writable export claims the VDI (no import or GC merge meanwhile) until stopped.
        """
        db = self.toolstack.db
        row = db.get("VDI", vdi)
        drv = driver_of(drivers(self.toolstack), db, db.get("SR", row["SR"]))
        assert isinstance(drv, FileSr)
        if row["uuid"] not in self._nbd:
            writable = not (row["read_only"] or row["is_a_snapshot"] or drv.read_only)
            await self._start_nbd(row["uuid"], drv.path(row["location"]), row["location"], writable)
        port = self._nbd[row["uuid"]][2]
        tls = self._nbd_tls()
        return {
            "exportname": f"/{row['uuid']}?session_id={session}",
            "address": "127.0.0.1",
            "port": port,
            "cert": tls[1] if tls else "",
            "subject": tls[2] if tls else "",
        }

    def _nbd_tls(self) -> tuple[ssl.SSLContext, str, str] | None:
        """NBD's TLS: the host's certificate (HTTPS's), its PEM and its subject's name."""
        state = self.toolstack.state_dir
        if self._tls is None and state is not None:
            cert, key = ensure_certificate(Path(state) / "tls")
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            pem = cert.read_text()
            names = x509.load_pem_x509_certificate(pem.encode()).subject
            subject = str(names.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
            self._tls = (context, pem, subject)
        return self._tls

    def _nbd_tls_required(self) -> bool:
        """As XAPI: an ``nbd`` network wants TLS; an ``insecure_nbd`` one allows plain NBD."""
        purposes = {p for net in self.toolstack.db.table("network").rows.values()
                    for p in net["purpose"]}  # fmt: skip
        return "nbd" in purposes and "insecure_nbd" not in purposes

    async def _start_nbd(self, vdi_uuid: str, path: str, location: str, writable: bool) -> None:
        # the GC coalescing the chain holds it a moment (say, right after a revert dropped
        # the old disk): wait for it; any other writer is refused
        if writable and not await self.busy.claim_waiting_for_gc(location):
            raise ApiError("VDI_IN_USE", ["", "nbd"])
        try:
            image = await asyncio.to_thread(VhdImage.open, path, writable=writable)
        except Exception as exc:
            if writable:
                self.busy.discard(location)
            raise ApiError("VDI_MISSING", ["", vdi_uuid]) from exc
        exports = {vdi_uuid: VhdBackend(image, read_only=not writable)}
        tls = self._nbd_tls()

        def authorise(name: str) -> NbdGrant:
            return self._nbd_authorise(vdi_uuid, name)

        tcp = await serve_nbd(
            exports,
            port=0,
            tls=tls[0] if tls else None,
            tls_required=self._nbd_tls_required(),
            authorise=authorise,
        )
        servers = [tcp]
        sock = self.nbd_socket(vdi_uuid) if self.toolstack.state_dir is not None else ""
        if sock and len(sock.encode()) <= 107:
            os.makedirs(os.path.dirname(sock), exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(sock)
            servers.append(await serve_nbd(exports, unix_path=sock, authorise=authorise))
            access = self._socket_access.pop(vdi_uuid, None)
            if access is not None:  # a re-export (its chain changed) lets in whom the last did
                os.chown(sock, -1, access[0])
                os.chmod(sock, access[1])
        self._nbd[vdi_uuid] = (servers, image, tcp.port, location if writable else "")

    # ---- the disks of running domains --------------------------------------------------

    def attach_token(self, vdi_uuid: str) -> str:
        if self._attach_key is None:
            path = Path(str(self.toolstack.state_dir)) / "nbd-attach.key"
            if not path.exists():
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(os.urandom(32))
            self._attach_key = path.read_bytes()
        return hmac.new(self._attach_key, vdi_uuid.encode(), hashlib.sha256).hexdigest()[:32]

    def attach_name(self, vdi_uuid: str) -> str:
        return f"/{vdi_uuid}?attach={self.attach_token(vdi_uuid)}"

    def can_attach(self, vdi: str) -> bool:
        """Whether ``vdi`` lives on a file SR of this toolstack (so it can be exported)."""
        db = self.toolstack.db
        if self.toolstack.state_dir is None or not db.exists("VDI", vdi):
            return False
        drv = driver_of(drivers(self.toolstack), db, db.get("SR", db.get("VDI", vdi)["SR"]))
        return isinstance(drv, FileSr)

    async def attach(self, vdi: str, writable: bool) -> tuple[str, str]:
        """Export ``vdi`` to a domain; ``(unix socket, export name)``.

        One writer per disk: a second writable attach of a VDI already attached writable
        is refused (VDI_IN_USE), as is one while some other export writes it."""
        db = self.toolstack.db
        row = db.get("VDI", vdi)
        uuid = row["uuid"]
        drv = driver_of(drivers(self.toolstack), db, db.get("SR", row["SR"]))
        assert isinstance(drv, FileSr)
        writable = writable and not (row["read_only"] or row["is_a_snapshot"] or drv.read_only)
        if uuid in self._nbd and self._nbd[uuid][3] == "" and writable:
            await self.stop_nbd(uuid)  # exported read-only (get_nbd_info): reopen it writable
        if uuid not in self._nbd:
            await self._start_nbd(uuid, drv.path(row["location"]), row["location"], writable)
        self.attached[uuid] = writable or self.attached.get(uuid, False)
        return self.nbd_socket(uuid), self.attach_name(uuid)

    async def attach_file(
        self, key: str, path: str, writable: bool, deferred: bool = False
    ) -> tuple[str, str]:
        """Export the VHD file ``path`` to a domain of this host under ``key`` (its VDI's
        uuid) although no VDI row of this database names it: a pool member running a
        domain whose disk is on the pool's shared SR (the master named the file).
        ``(unix socket, export name)``; the export is stopped by :meth:`detach`.

        ``deferred`` (a live migration's destination, while the source's host still
        writes the file): the chain is opened read-only, no lock taken, but offered
        writable; :meth:`take_over` opens it for writing once the source let it go."""
        pending = key in self._pending
        if key in self._nbd and writable and not deferred and (pending or not self._nbd[key][3]):
            await self.stop_nbd(key)
        if key not in self._nbd:
            await self._start_nbd(key, path, path, writable and not deferred)
            if writable and deferred:
                self._pending[key] = path
                self._vhd_backend(key).read_only = False  # refused by the read-only chain
        self.attached[key] = writable or self.attached.get(key, False)
        return self.nbd_socket(key), self.attach_name(key)

    def _vhd_backend(self, key: str) -> VhdBackend:
        backend = self._nbd[key][0][0].backend(key)
        assert isinstance(backend, VhdBackend)
        return backend

    async def take_over(self, key: str) -> None:
        """Open a deferred export's chain afresh, for writing: the metadata as the host that
        wrote it last left it (VDI_IN_USE while another writer holds it)."""
        path = self._pending.get(key)
        if path is None or key not in self._nbd:
            return
        servers, old, port, _ = self._nbd[key]
        if not await self.busy.claim_waiting_for_gc(path):
            raise ApiError("VDI_IN_USE", ["", "nbd"])
        try:
            image = await asyncio.to_thread(VhdImage.open, path, writable=True)
        except Exception as exc:
            self.busy.discard(path)
            raise ApiError("VDI_IN_USE", ["", key]) from exc
        self._vhd_backend(key).image = image  # the same object behind every server
        del self._pending[key]
        old.close()
        self._nbd[key] = (servers, image, port, path)

    async def detach(self, vdi_uuid: str) -> None:
        """The last domain using the export is gone: stop it (its writes made durable)."""
        if self.attached.pop(vdi_uuid, None) is not None:
            await self.stop_nbd(vdi_uuid)

    async def reattach(self, vdi_uuid: str) -> None:
        """Start an attached VDI's export again, on its chain as it is now."""
        db = self.toolstack.db
        ref = db.table("VDI").by_uuid.get(vdi_uuid)
        writable = self.attached.pop(vdi_uuid, None)
        if ref is None or writable is None:
            return
        await self.attach(ref, writable)

    async def export_attached(self, vdis: list[tuple[str, bool]]) -> None:
        """Start the exports of the disks of running domains (at toolstack start)."""
        for vdi, writable in vdis:
            if self.can_attach(vdi):
                try:
                    await self.attach(vdi, writable)
                except ApiError:
                    log.exception("cannot export attached VDI %s", vdi)

    def _nbd_authorise(self, vdi_uuid: str, name: str) -> NbdGrant:
        """Grant the export of ``vdi_uuid`` to the export name ``name``, or refuse it.

        ERR_UNKNOWN: the name names another VDI (or one that is gone). ERR_POLICY: no
        session, or one that is not live. A role that may call VDI.get_nbd_info gets what
        the export allows; any other live session (read-only, vm-operator...) reads only.
        """
        named, session = parse_export_name(name)
        if named != vdi_uuid:
            raise NbdRefused(nbd_protocol.REP_ERR_UNKNOWN, f"no export for VDI {named!r} here")
        token = parse_qs(urlsplit(name).query).get("attach", [""])[0]
        if token and named in self.attached:  # a domain's disk (maybe the pool's, on a member)
            if hmac.compare_digest(token, self.attach_token(named)):
                return NbdGrant(vdi_uuid, read_only=not self.attached[named])
            raise NbdRefused(nbd_protocol.REP_ERR_POLICY, f"VDI {named}: bad attach token")
        if named not in self.toolstack.db.table("VDI").by_uuid:
            raise NbdRefused(nbd_protocol.REP_ERR_UNKNOWN, f"no export for VDI {named!r} here")
        if session is None:
            raise NbdRefused(nbd_protocol.REP_ERR_POLICY, f"VDI {named}: no session_id")
        try:
            info = self.toolstack.auth.check(session)
        except ApiError:
            raise NbdRefused(nbd_protocol.REP_ERR_POLICY, f"VDI {named}: invalid session") from None
        return NbdGrant(vdi_uuid, read_only=info.role not in _NBD_WRITERS)

    async def stop_nbd(self, vdi_uuid: str) -> None:
        self._pending.pop(vdi_uuid, None)
        entry = self._nbd.pop(vdi_uuid, None)
        if entry is None:
            return
        with contextlib.suppress(OSError):  # a domain's device model may have been let in
            st = os.stat(self.nbd_socket(vdi_uuid))
            self._socket_access[vdi_uuid] = (st.st_gid, stat.S_IMODE(st.st_mode))
        for server in entry[0]:
            await server.close()
        if entry[3]:  # writable: make the writes durable, then release the claim
            await asyncio.to_thread(entry[1].flush)
        entry[1].close()
        if entry[3]:
            self.busy.discard(entry[3])

    def forget_nbd(self, vdi_uuid: str) -> None:
        """Stop a VDI's export soon (its chain changed); the next get_nbd_info starts anew."""
        if vdi_uuid in self._nbd:
            asyncio.get_running_loop().create_task(self.stop_nbd(vdi_uuid))


_NBD_INFO = message("VDI.get_nbd_info")
assert _NBD_INFO is not None
_NBD_WRITERS = _NBD_INFO.roles  # the roles that may write through an export


def parse_export_name(name: str) -> tuple[str, str | None]:
    """``(vdi uuid, session ref or None)`` from an export name ``/<uuid>?session_id=<ref>``.

    The leading ``/`` may be left out; a name with no, or more than one, session_id has
    no session.
    """
    parts = urlsplit(name)
    sessions = parse_qs(parts.query, keep_blank_values=True).get("session_id", [])
    return parts.path.removeprefix("/"), sessions[0] if len(sessions) == 1 else None


@contextlib.asynccontextmanager
async def exclusive(ctx: Context, vdi: str) -> AsyncIterator[None]:
    """Hold ``vdi``'s file alone while its chain changes; OTHER_OPERATION_IN_PROGRESS if used.

    Its NBD export (of the old chain) is stopped: the next get_nbd_info restarts it. So
    are the exports of pool members whose domains write it (``elsewhere``), restarted after.
    """
    row = ctx.db.get("VDI", vdi)
    storage = ctx.toolstack.storage
    elsewhere = getattr(storage, "elsewhere", None)  # a master's, of its members
    users = await elsewhere.close(vdi) if elsewhere is not None else []  # members' too
    try:
        await storage.stop_nbd(row["uuid"])  # a writable export holds a claim: end it first
        if not await storage.busy.claim_waiting_for_gc(row["location"]):
            # xapi: ocaml/xapi/message_forwarding.ml passes 2
            raise ApiError("OTHER_OPERATION_IN_PROGRESS", ["VDI", vdi])
        try:
            yield
        finally:
            storage.busy.discard(row["location"])
            if row["uuid"] in storage.attached:  # a running guest's disk: on the new chain
                await storage.reattach(row["uuid"])
    finally:
        if users and elsewhere is not None:
            await elsewhere.reopen(users)
