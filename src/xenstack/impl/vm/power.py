"""VM power operations: start, shut down, reboot, pause, suspend, resume, reset.

Each one asks the backend and records what the backend reports; the policy layer
(``api.forwarding``) has checked and marked the operation before and removes the mark after.
If the backend fails, nothing is recorded, so the VM is left as it was.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ...core.context import Context
from ...errors import ApiError
from ...xenops.interface import DomainInfo
from ..devices.devices import sync_hotplug
from ..host.hypervisor import Hypervisor, backend_errors, domain_spec, hypervisor
from ..host.specs import attach_disks, detach_disks, image_disk
from ..registry import implements
from . import consoles, suspend_image, xenstore_nodes
from .lifecycle import update_allowed_operations
from .metrics import drop_guest_metrics, record_domain, record_halted, record_suspended
from .placement import assert_can_boot_here, choose_host, host_is_live, start_memory
from .squeeze import making_room


async def boot(ctx: Context, hv: Hypervisor, vm: str, host: str, paused: bool) -> None:
    """Start the VM's domain on ``host`` and record it (the operation is already marked)."""
    db = ctx.db
    assert_can_boot_here(hv, db, vm, host)
    async with making_room(hv, db, host, start_memory(db.get("VM", vm))):
        spec = await attach_disks(ctx.toolstack, domain_spec(db, vm), host)
        try:
            with backend_errors():
                info = await hv.backend.vm_start(hv.host(db, host), spec, paused)
        except BaseException:
            await detach_disks(ctx.toolstack, vm)
            raise
    with db.transaction():
        record_domain(db, vm, info, started=True, clock=ctx.toolstack.clock)
        hv.sync_memory(db, host)
    xenstore_nodes.create(ctx, vm, host, info.domid)
    consoles.sync(ctx.toolstack, vm)


def placed(ctx: Context, hv: Hypervisor, vm: str) -> str:
    """The host the policy layer placed the call on (the placement's choice if none did)."""
    return ctx.work_host or choose_host(hv, ctx.db, vm)


@implements("VM.start")
async def start(ctx: Context, vm: str, start_paused: bool, force: bool) -> None:
    hv = hypervisor(ctx)
    await boot(ctx, hv, vm, placed(ctx, hv, vm), start_paused)


@implements("VM.start_on")
async def start_on(ctx: Context, vm: str, host: str, start_paused: bool, force: bool) -> None:
    await boot(ctx, hypervisor(ctx), vm, host, start_paused)


async def halt(ctx: Context, vm: str, clean: bool) -> None:
    db = ctx.db
    hv = hypervisor(ctx)
    host = db.get("VM", vm)["resident_on"]
    await xenstore_nodes.ask_guest(ctx, vm, "poweroff", clean)
    xenstore_nodes.destroy(ctx, vm)
    with backend_errors():
        if hv.backend.vm_info(vm) is not None:
            await hv.backend.vm_shutdown(vm, clean)
        hv.backend.vm_discard_image(vm)
    with db.transaction():
        record_halted(db, vm, ctx.toolstack.clock)
        hv.sync_memory(db, host)
    consoles.sync(ctx.toolstack, vm)
    await detach_disks(ctx.toolstack, vm)
    await suspend_image.drop(ctx, vm)


@implements("VM.shutdown")
async def shutdown(ctx: Context, vm: str) -> None:
    """Clean shutdown when the VM runs, hard otherwise (paused or suspended)."""
    running = ctx.db.get("VM", vm)["power_state"] == "Running"
    try:
        await halt(ctx, vm, clean=running)
    except ApiError as err:  # the guest did not take the request: hard, as XAPI falls back
        if err.code != "VM_FAILED_SHUTDOWN_ACKNOWLEDGMENT":
            raise
        await halt(ctx, vm, clean=False)


async def reboot(ctx: Context, vm: str, clean: bool) -> None:
    db = ctx.db
    hv = hypervisor(ctx)
    host = db.get("VM", vm)["resident_on"]
    await xenstore_nodes.ask_guest(ctx, vm, "reboot", clean)
    xenstore_nodes.destroy(ctx, vm)
    spec = await attach_disks(ctx.toolstack, domain_spec(db, vm), host)
    with backend_errors():
        info = await hv.backend.vm_reboot(vm, clean, spec)
    with db.transaction():
        drop_guest_metrics(db, vm)
        record_domain(db, vm, info, started=True, clock=ctx.toolstack.clock)
        hv.sync_memory(db, host)
    xenstore_nodes.create(ctx, vm, host, info.domid)
    consoles.sync(ctx.toolstack, vm)


def _clean_or_hard(body: Callable[..., Awaitable[None]], op: str, clean: bool) -> None:
    async def run(ctx: Context, vm: str) -> None:
        await body(ctx, vm, clean)

    implements(f"VM.{op}")(run)


for _verb, _body in (("shutdown", halt), ("reboot", reboot)):
    _clean_or_hard(_body, f"clean_{_verb}", True)
    _clean_or_hard(_body, f"hard_{_verb}", False)


def _pause_or_unpause(op: str) -> None:
    async def run(ctx: Context, vm: str) -> None:
        hv = hypervisor(ctx)
        with backend_errors():
            info = await getattr(hv.backend, f"vm_{op}")(vm)
        with ctx.db.transaction():
            record_domain(ctx.db, vm, info, started=False, clock=ctx.toolstack.clock)

    implements(f"VM.{op}")(run)


_pause_or_unpause("pause")
_pause_or_unpause("unpause")


@implements("VM.suspend")
async def suspend(ctx: Context, vm: str) -> None:
    """Save the memory into a new suspend VDI; on failure the VDI is destroyed again."""
    db = ctx.db
    hv = hypervisor(ctx)
    host = db.get("VM", vm)["resident_on"]
    await xenstore_nodes.ask_guest(ctx, vm, "suspend", True)
    image = await suspend_image.create(ctx, vm, host)
    storage = ctx.toolstack.storage
    try:
        target = await image_disk(ctx.toolstack, image, writable=True, host=host)
        with backend_errors():
            await hv.backend.vm_suspend(vm, target)
    except BaseException:
        if db.exists("VDI", image):
            await storage.detach(db.get("VDI", image)["uuid"])
        await suspend_image.destroy(ctx, image)
        raise
    await storage.detach(db.get("VDI", image)["uuid"])  # the image is durable
    await detach_disks(ctx.toolstack, vm)
    with db.transaction():
        xenstore_nodes.destroy(ctx, vm)
        drop_guest_metrics(db, vm)
        record_suspended(db, vm, clock=ctx.toolstack.clock)
        db.set("VM", vm, "suspend_VDI", image)
        hv.sync_memory(db, host)
    consoles.sync(ctx.toolstack, vm)


async def wake(ctx: Context, vm: str, host: str | None, paused: bool) -> None:
    db = ctx.db
    hv = hypervisor(ctx)
    target = host if host is not None else placed(ctx, hv, vm)
    assert_can_boot_here(hv, db, vm, target)
    async with making_room(hv, db, target, start_memory(db.get("VM", vm))):
        info = await _resume_domain(ctx, hv, vm, target, paused)
    await sync_hotplug(ctx, vm, info)
    info = hv.backend.vm_info(vm) or info
    with db.transaction():
        record_domain(db, vm, info, started=True, clock=ctx.toolstack.clock)
        hv.sync_memory(db, target)
    xenstore_nodes.create(ctx, vm, target, info.domid)
    consoles.sync(ctx.toolstack, vm)
    await suspend_image.drop(ctx, vm)


async def _resume_domain(
    ctx: Context, hv: Hypervisor, vm: str, host: str, paused: bool
) -> DomainInfo:
    """Rebuild the domain from the VM's suspend VDI (given to a backend that opens disks)."""
    db, toolstack = ctx.db, ctx.toolstack
    image_vdi = db.get("VM", vm)["suspend_VDI"]
    image = (
        await image_disk(toolstack, image_vdi, writable=False, host=host)
        if db.exists("VDI", image_vdi)
        else None
    )
    spec = suspend_image.as_saved(db, image_vdi, domain_spec(db, vm))
    spec = await attach_disks(toolstack, spec, host)
    try:
        with backend_errors():
            return await hv.backend.vm_resume(hv.host(db, host), vm, paused, spec, image)
    except BaseException:
        await detach_disks(toolstack, vm)
        raise
    finally:
        if image is not None:
            await toolstack.storage.detach(db.get("VDI", image_vdi)["uuid"])


@implements("VM.resume")
async def resume(ctx: Context, vm: str, start_paused: bool, force: bool) -> None:
    await wake(ctx, vm, None, start_paused)


@implements("VM.resume_on")
async def resume_on(ctx: Context, vm: str, host: str, start_paused: bool, force: bool) -> None:
    await wake(ctx, vm, host, start_paused)


@implements("VM.power_state_reset")
async def power_state_reset(ctx: Context, vm: str) -> None:
    """Force the VM's record to Halted, forgetting any domain whose host is gone."""
    db = ctx.db
    row = db.get("VM", vm)
    if row["is_control_domain"]:
        raise ApiError("CANNOT_RESET_CONTROL_DOMAIN", [vm])
    hv = hypervisor(ctx)
    info = hv.backend.vm_info(vm)
    host = row["resident_on"]
    live_host = db.exists("host", host) and host_is_live(db, host)
    if info is not None and info.state == "running" and live_host:
        # xapi: ocaml/xapi/xapi_vm.ml passes 1
        raise ApiError("DOMAIN_EXISTS", [vm])
    with backend_errors():
        hv.backend.vm_reset(vm)
    with db.transaction():
        db.set("VM", vm, "current_operations", {})
        record_halted(db, vm, ctx.toolstack.clock)
        hv.sync_memory(db, host)
        update_allowed_operations(db, vm)
    await suspend_image.drop(ctx, vm)
