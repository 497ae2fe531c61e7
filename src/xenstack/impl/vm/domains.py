"""Domains that end on their own, and domains found running when the toolstack starts.

A real backend reports a domain that ended without being asked (the guest powered off,
rebooted or panicked, or its hypervisor process vanished) to :func:`domain_exited`, which
applies the VM's ``actions_after_shutdown``/``_reboot``/``_crash`` as XAPI does: restart the
VM in a fresh domain on the same host, or record it Halted. At start-up :func:`adopt`
takes back every domain the database says is running (a toolstack restart leaves guests
running, as ``xe-toolstack-restart`` does); one that vanished meanwhile is handled as a
crash, so nothing stays a zombie ``Running``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ...core.context import Context
from ...xenops.interface import XenopsError
from ..host.hypervisor import Hypervisor, info_from_row
from ..host.specs import attach_disks, detach_disks, domain_spec
from . import consoles, xenstore_nodes
from .metrics import drop_guest_metrics, record_domain, record_halted

log = logging.getLogger(__name__)

LIVE_STATES = ("Running", "Paused")
RESTARTS = ("restart", "rename_restart", "coredump_and_restart")
ACTION_FIELD = {"poweroff": "actions_after_shutdown", "reboot": "actions_after_reboot"}


def domain_exited(toolstack: Any, vm: str, domid: int, why: str) -> None:
    """The backend's exit listener: handle the end soon, on the event loop."""
    task = asyncio.get_running_loop().create_task(after_exit(toolstack, vm, domid, why))
    toolstack.background.add(task)
    task.add_done_callback(toolstack.background.discard)


async def after_exit(toolstack: Any, vm: str, domid: int, why: str) -> None:
    db = toolstack.db
    row = db.table("VM").rows.get(vm)
    if row is None or row["domid"] != domid or row["power_state"] not in LIVE_STATES:
        return
    action = row[ACTION_FIELD.get(why, "actions_after_crash")]
    log.info("VM %s domain %d ended (%s): %s", row["uuid"], domid, why, action)
    host = row["resident_on"]
    hv: Hypervisor = toolstack.hypervisor
    xenstore_nodes.destroy(Context(toolstack, ""), vm)  # the ended domain's nodes go with it
    if action in RESTARTS and await restart(toolstack, hv, vm, host):
        return
    with db.transaction():
        record_halted(db, vm, toolstack.clock)
        hv.sync_memory(db, host)
    consoles.sync(toolstack, vm)
    await detach_disks(toolstack, vm)


async def restart(toolstack: Any, hv: Hypervisor, vm: str, host: str) -> bool:
    """Boot the VM again on ``host``; whether it worked."""
    db = toolstack.db
    try:
        spec = await attach_disks(toolstack, domain_spec(db, vm), host)
        info = await hv.backend.vm_start(hv.host(db, host), spec, False)
    except (XenopsError, Exception):
        log.exception("restarting VM %s failed", vm)
        return False
    with db.transaction():
        drop_guest_metrics(db, vm)
        record_domain(db, vm, info, started=True, clock=toolstack.clock)
        hv.sync_memory(db, host)
    xenstore_nodes.create(Context(toolstack, ""), vm, host, info.domid)
    consoles.sync(toolstack, vm)
    return True


async def adopt(toolstack: Any) -> None:
    """Take back the running domains of a backend that keeps them across restarts."""
    hv: Hypervisor = toolstack.hypervisor
    if hv.simulator is not None:
        return  # the simulator's domains were restored from the database already
    db = toolstack.db
    # the machine's CPUs and memory before anything is served (a pool join compares them);
    # the accelerator once the KVM probe, which may take seconds, is done
    await record_host_facts(toolstack, hv, probe=False)
    facts = asyncio.get_running_loop().create_task(record_host_facts(toolstack, hv))
    toolstack.background.add(facts)
    facts.add_done_callback(toolstack.background.discard)
    for ref, vm in list(db.table("VM").rows.items()):
        if vm["is_control_domain"] or vm["power_state"] not in LIVE_STATES:
            continue
        if not db.exists("host", vm["resident_on"]):
            continue
        spec = await attach_disks(toolstack, domain_spec(db, ref), vm["resident_on"])
        try:
            info = await hv.backend.adopt(
                hv.host(db, vm["resident_on"]), spec, info_from_row(db, ref, vm)
            )
        except XenopsError:
            log.exception("adopting VM %s failed", ref)
            info = None
        if info is None:
            await after_exit(toolstack, ref, vm["domid"], "vanished")
            continue
        with db.transaction():
            record_domain(db, ref, info, started=False, clock=toolstack.clock)
            hv.sync_memory(db, vm["resident_on"])
        consoles.sync(toolstack, ref)


async def record_host_facts(toolstack: Any, hv: Hypervisor, probe: bool = True) -> None:
    """The machine's memory, CPUs and accelerator on the hosts this toolstack runs, and the
    CPUs on the pool's record while it is a pool of its own (what a joining host is
    compared with)."""
    facts = await hv.backend.host_facts(probe)
    if facts is None:
        return
    db = toolstack.db
    cpu: dict[str, str] = dict(facts["cpu_info"])  # type: ignore[call-overload]
    with db.transaction():
        for ref, host in db.table("host").rows.items():
            db.update("host", ref, cpu_info=cpu, capabilities=facts["capabilities"])
            if db.exists("host_metrics", host["metrics"]):
                db.set("host_metrics", host["metrics"], "memory_total", facts["memory_total"])
        for pool in db.refs("pool"):
            if db.refs("host") == [db.get("pool", pool)["master"]]:
                keep = ("cpu_count", "socket_count", "vendor", "features_pv", "features_hvm")
                db.update("pool", pool, cpu_info={k: cpu[k] for k in keep if k in cpu})
    for ref in list(db.table("host").rows):
        hv.known_hosts.discard(ref)  # told again, with the real memory
        with db.transaction():
            hv.sync_memory(db, ref)
