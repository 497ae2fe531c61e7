"""A domain's XenStore nodes, as XAPI and xenopsd make them, and dom0's requests to it.

:func:`create` runs when a domain is recorded started (boot, reboot, resume): it introduces
the domain and writes ``/local/domain/<domid>`` (``name``, ``domid``, ``vm``,
``memory/target`` and ``static-max`` in KiB, ``device/vbd|vif/<n>``, ``console/``, and the
guest-writable ``control/``, ``data/``, ``attr/``, ``error/``, ``drivers/``, ``messages/``),
``/vm/<uuid>`` and the ``vm-data/`` keys of ``VM.xenstore_data`` (only those under
``vm-data``, as XAPI passes them). The guest may read what dom0 writes and write only its
guest-writable directories. :func:`destroy` removes them when the domain goes and releases
the domain. :func:`request_shutdown` is a clean shutdown, reboot or suspend request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ...core.context import Context, Services
from ...db.store import Database
from ...errors import ApiError
from ...xenstore import Connection, XenStore, XsError
from ..host.hypervisor import hypervisor
from ..pool import xenstore_mirror
from ..pool.remote_backend import PoolBackend

log = logging.getLogger(__name__)

GUEST_WRITABLE = ("control", "data", "attr", "error", "drivers", "messages", "device")
KIB = 1024
ACK_TIMEOUT = 60.0  # seconds a guest has to take a shutdown request (xenopsd waits as long)


def xenstore(ctx: Context | Services, host: str) -> XenStore:
    toolstack = ctx.toolstack if isinstance(ctx, Context) else ctx
    store: XenStore = toolstack.xenstore(host)
    return store


def _dom0(ctx: Context | Services, host: str) -> Connection:
    return xenstore(ctx, host).dom0


def create(ctx: Context, vm: str, host: str, domid: int) -> None:
    """Write the nodes of the VM's new domain ``domid`` on ``host``."""
    row = ctx.db.get("VM", vm)
    xs = _dom0(ctx, host)
    home = f"/local/domain/{domid}"
    with contextlib.suppress(XsError):
        xs.rm(home)
    readonly, writable = ["n0", f"r{domid}"], [f"n{domid}"]
    _put(xs, home, "", readonly)
    for key, value in _domain_keys(ctx, row, domid).items():
        _put(xs, f"{home}/{key}", value, readonly)
    for name in GUEST_WRITABLE:
        _put(xs, f"{home}/{name}", "", writable)
    for key, value in sorted(row["xenstore_data"].items()):
        if key == "vm-data" or key.startswith("vm-data/"):
            _put(xs, f"{home}/{key}", value, readonly)
    vm_path = f"/vm/{row['uuid']}"
    _put(xs, vm_path, "", readonly)
    for key, value in (("uuid", row["uuid"]), ("name", row["name_label"]), ("domid", str(domid))):
        _put(xs, f"{vm_path}/{key}", value, readonly)
    xs.introduce(domid)
    _mirror(ctx, host, domid, [home, vm_path], created=True)


def restore(toolstack: Services) -> None:
    """At start: the nodes of every domain the database says runs (XenStore is in memory,
    the guests outlived the toolstack)."""
    ctx = Context(toolstack, "")
    for host, host_row in list(ctx.db.table("host").rows.items()):
        if ctx.db.exists("VM", host_row["control_domain"]):
            control_domain(ctx, host, host_row["control_domain"])
    for vm, row in list(ctx.db.table("VM").rows.items()):
        live = row["power_state"] in ("Running", "Paused") and not row["is_control_domain"]
        if live and ctx.db.exists("host", row["resident_on"]) and int(row["domid"]) > 0:
            create(ctx, vm, row["resident_on"], int(row["domid"]))


def control_domain(ctx: Context, host: str, vm: str) -> None:
    """dom0's own nodes, as on a Xen host: ``/local/domain/0/{name,domid,vm}`` and its
    ``/vm/<uuid>`` (how a process in dom0 finds its own VM, as nova's compute does)."""
    row = ctx.db.get("VM", vm)
    xs, readable = _dom0(ctx, host), ["n0"]
    keys = {"name": row["name_label"], "domid": "0", "vm": f"/vm/{row['uuid']}"}
    for key, value in keys.items():
        _put(xs, f"/local/domain/0/{key}", value, readable)
    for key, value in (("uuid", row["uuid"]), ("name", row["name_label"]), ("domid", "0")):
        _put(xs, f"/vm/{row['uuid']}/{key}", value, readable)


def _domain_keys(ctx: Context, row: dict[str, Any], domid: int) -> dict[str, str]:
    keys = {
        "name": row["name_label"],
        "domid": str(domid),
        "vm": f"/vm/{row['uuid']}",
        "memory/target": str(row["memory_dynamic_max"] // KIB),
        "memory/static-max": str(row["memory_static_max"] // KIB),
        "console/type": "xenconsoled",
        "console/limit": "1048576",
    }
    for cls, kind, number in (("VBD", "vbd", "userdevice"), ("VIF", "vif", "device")):
        for ref in row[f"{cls}s"]:
            if not ctx.db.exists(cls, ref):
                continue
            dev = ctx.db.get(cls, ref)
            base = f"device/{kind}/{dev[number]}"
            keys[f"{base}/backend"] = f"/local/domain/0/backend/{kind}/{domid}/{dev[number]}"
            keys[f"{base}/backend-id"] = "0"
            keys[f"{base}/state"] = "1"
            if kind == "vif":
                keys[f"{base}/mac"] = dev["MAC"]
    return keys


FORWARDED = ("data/host/", "vm-data/", "control/shutdown", "device/vif/")


def guest_key(store: XenStore, db: Database, path: str) -> tuple[str, str] | None:
    """(VM ref, key relative to its domain's home) when ``path`` is a node dom0 writes for
    the guest to read (nova's agent requests, ``vm-data/``, shutdown requests, its VIFs),
    else None."""
    parts = path.split("/")
    if len(parts) < 5 or parts[1:3] != ["local", "domain"] or not parts[3].isdigit():
        return None
    key = "/".join(parts[4:])
    if int(parts[3]) == 0 or not any(key.startswith(p) or key == p for p in FORWARDED):
        return None
    try:
        vm_path = store.dom0.read(f"/local/domain/{parts[3]}/vm").decode()
        vm = db.by_uuid("VM", vm_path.rsplit("/", 1)[-1])
    except Exception:  # no such domain or VM (any more)
        return None
    return vm, key


def _put(xs: Connection, path: str, value: str, perms: list[str]) -> None:
    try:
        xs.write(path, value.encode())
        xs.set_perms(path, perms)
    except XsError as exc:  # a key XenStore cannot hold (XAPI skips it too)
        log.info("xenstore: %s not written: %s", path, exc.name)


def destroy(ctx: Context, vm: str) -> None:
    """Remove the nodes of the VM's domain (its ``domid`` on ``resident_on``), release it."""
    row = ctx.db.get("VM", vm)
    host, domid, uuid = row["resident_on"], int(row["domid"]), row["uuid"]
    if not ctx.db.exists("host", host) or domid < 0:
        return
    xs = _dom0(ctx, host)
    for path in (f"/local/domain/{domid}", f"/vm/{uuid}"):
        with contextlib.suppress(XsError):
            xs.rm(path)
    with contextlib.suppress(XsError):
        xs.release(domid)
    _mirror(ctx, host, domid, [f"/local/domain/{domid}", f"/vm/{uuid}"], created=False)


def _mirror(ctx: Context, host: str, domid: int, tops: list[str], *, created: bool) -> None:
    """A member toolstack's own XenStore gets the same nodes (impl/pool/xenstore_mirror)."""
    backend = hypervisor(ctx).backend
    if isinstance(backend, PoolBackend) and backend.is_remote(host):
        nodes = xenstore_mirror.dump(xenstore(ctx, host), tops) if created else None
        backend.mirror_xenstore(host, domid, tops, nodes)


async def ask_guest(ctx: Context, vm: str, reason: str, clean: bool) -> None:
    """A clean ``reason`` (poweroff, reboot, suspend) of a running VM asks its guest first
    and fails as XAPI does, ``VM_FAILED_SHUTDOWN_ACKNOWLEDGMENT``, if the guest does not take
    the request in time; a hard one asks nothing."""
    row = ctx.db.get("VM", vm)
    if not clean or row["power_state"] != "Running" or _on_a_member(ctx, row["resident_on"]):
        return
    if not ctx.db.exists("host", row["resident_on"]):
        raise ApiError("VM_FAILED_SHUTDOWN_ACKNOWLEDGMENT", [vm])
    if reason == "suspend" and not _has_feature(ctx, row, "suspend"):
        return  # no PV suspend: the device model saves the whole machine, as for HVM guests
    if not await request_shutdown(ctx, vm, reason):
        raise ApiError("VM_FAILED_SHUTDOWN_ACKNOWLEDGMENT", [vm])


def _has_feature(ctx: Context, row: dict[str, Any], feature: str) -> bool:
    """Whether the guest's agent advertised ``control/feature-<feature>``."""
    key = f"/local/domain/{int(row['domid'])}/control/feature-{feature}"
    try:
        return _dom0(ctx, row["resident_on"]).read(key) == b"1"
    except XsError:
        return False


def _on_a_member(ctx: Context, host: str) -> bool:
    """Whether the domain runs in a member toolstack's backend: that host's own XenStore has
    its guest, so the member's backend asks it (as a member's xenopsd does in XAPI), and this
    host's copy of the member's nodes would never see the answer."""
    backend = hypervisor(ctx).backend
    return isinstance(backend, PoolBackend) and backend.is_remote(host)


async def request_shutdown(ctx: Context, vm: str, reason: str) -> bool:
    """Ask the guest to ``reason`` (poweroff, reboot, suspend) through ``control/shutdown``;
    True once it took the request (cleared the key), False if it did not in time."""
    row = ctx.db.get("VM", vm)
    host, domid = row["resident_on"], int(row["domid"])
    xs = xenstore(ctx, host)
    key = f"/local/domain/{domid}/control/shutdown"
    taken = asyncio.get_running_loop().create_future()
    asked = False

    def seen(path: str, token: str) -> None:
        if not asked or path != key or taken.done():
            return
        try:
            value = xs.dom0.read(key)
        except XsError:  # removed: taken too (a guest agent whose channel can only remove)
            value = b""
        if not value:
            taken.set_result(True)

    watcher = xs.connect(0, seen)
    try:
        watcher.watch(key, "shutdown-ack")
        xs.dom0.write(key, reason.encode())  # reaches the guest's channel too (guest_key)
        asked = True
        try:
            return bool(await asyncio.wait_for(taken, ACK_TIMEOUT))
        except TimeoutError:
            return False
    finally:
        watcher.close()
