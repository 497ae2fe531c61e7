"""Hot-plug of the QEMU backend's devices: VBDs (``blockdev-add`` and ``device_add``), CD
media changes (tray, medium), VIFs (the switch's port hook, ``netdev_add``, ``device_add``);
an unplug waits for the guest to release the device (``DEVICE_DELETED``).

A file opened while the guest runs (an ISO inserted, a local disk plugged) is opened here and
handed to QEMU over its monitor (``add-fd``, then ``/dev/fdset/N``): a deprivileged QEMU
(:mod:`.runas`) cannot open the SR's files itself, and should not be able to."""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import replace
from typing import Protocol

from ..interface import DeviceError, DiskSpec, DomainSpec, NicSpec, PortHooks, XenopsError
from . import cmdline
from .domain import Domain
from .qmp import Monitor

RELEASE_TIMEOUT = 30.0


class HasDevices(Protocol):
    """What hot-plug needs of :class:`.backend.QemuBackend`."""

    hooks: PortHooks

    def _domain(self, vm_id: str) -> Domain: ...

    def _qmp(self, dom: Domain) -> Monitor: ...

    def grant(self, socket_path: str) -> None: ...


async def vbd_plug(
    backend: HasDevices, vm_id: str, device: str, disk: DiskSpec | None = None
) -> None:
    dom = backend._domain(vm_id)
    if device in dom.vbds:
        raise DeviceError(f"disk {device} is plugged already")
    if disk is None:
        raise DeviceError(f"disk {device}: nothing to open")
    qmp = backend._qmp(dom)
    backend.grant(disk.nbd_socket)
    if not disk.empty:
        await _open(qmp, disk)
    await qmp.execute("device_add", cmdline.disk_device(disk, None))
    dom.vbds.append(device)
    dom.spec = _with_disk(dom.spec, disk)
    dom.save()


async def vbd_unplug(backend: HasDevices, vm_id: str, device: str) -> None:
    dom = backend._domain(vm_id)
    if device not in dom.vbds:
        raise DeviceError(f"disk {device} is not plugged")
    await _device_del(backend, dom, cmdline.disk_id(device))
    disk = dom.spec.disk(device)
    if disk is not None and not disk.empty:
        for args in reversed(cmdline.blockdev(disk)):
            with contextlib.suppress(XenopsError):
                await backend._qmp(dom).execute("blockdev-del", {"node-name": args["node-name"]})
    dom.vbds.remove(device)
    dom.save()


async def vbd_media(backend: HasDevices, vm_id: str, device: str, disk: DiskSpec) -> None:
    dom = backend._domain(vm_id)
    qmp, dev_id = backend._qmp(dom), cmdline.disk_id(device)
    old = dom.spec.disk(device)
    await qmp.execute("blockdev-open-tray", {"id": dev_id, "force": True})
    await qmp.execute("blockdev-remove-medium", {"id": dev_id})
    if old is not None and not old.empty:
        for args in reversed(cmdline.blockdev(old)):
            with contextlib.suppress(XenopsError):
                await qmp.execute("blockdev-del", {"node-name": args["node-name"]})
    if not disk.empty:
        await _open(qmp, disk)
        await qmp.execute(
            "blockdev-insert-medium", {"id": dev_id, "node-name": cmdline.node(device)}
        )
        await qmp.execute("blockdev-close-tray", {"id": dev_id})
    dom.spec = _with_disk(dom.spec, disk)
    dom.save()


async def vif_plug(
    backend: HasDevices, vm_id: str, device: str, nic: NicSpec | None = None
) -> None:
    dom = backend._domain(vm_id)
    if device in dom.vifs:
        raise DeviceError(f"interface {device} is plugged already")
    if nic is None:
        raise DeviceError(f"interface {device}: no port")
    await backend.hooks.vif_plug(vm_id, dom.domid, nic, cmdline.tap_name(dom.domid, device))
    qmp = backend._qmp(dom)
    await qmp.execute("netdev_add", cmdline.netdev(nic, dom.domid))
    await qmp.execute("device_add", cmdline.nic_device(nic, None))
    dom.vifs.append(device)
    dom.spec = _with_nic(dom.spec, nic)
    if dom.channel is not None:
        dom.channel.macs[nic.mac.lower()] = device
    dom.save()


async def vif_unplug(backend: HasDevices, vm_id: str, device: str) -> None:
    dom = backend._domain(vm_id)
    if device not in dom.vifs:
        raise DeviceError(f"interface {device} is not plugged")
    await _device_del(backend, dom, cmdline.nic_id(device))
    with contextlib.suppress(XenopsError):
        await backend._qmp(dom).execute("netdev_del", {"id": f"net{device}"})
    nic = dom.spec.nic(device)
    if nic is not None:
        tap = cmdline.tap_name(dom.domid, device)
        await backend.hooks.vif_unplug(vm_id, dom.domid, nic, tap)
    dom.vifs.remove(device)
    dom.save()


async def _open(qmp: Monitor, disk: DiskSpec) -> None:
    """``blockdev-add`` the nodes of ``disk``; a file through a descriptor opened here."""
    nodes = cmdline.blockdev(disk)
    if disk.nbd_socket or not disk.path:
        for args in nodes:
            await qmp.execute("blockdev-add", args)
        return
    ro = disk.mode == "RO" or disk.kind == "CD"
    try:
        fd = os.open(disk.path, os.O_RDONLY if ro else os.O_RDWR)
    except OSError as exc:
        raise DeviceError(f"disk {disk.device}: {disk.path}: {exc.strerror}") from None
    try:
        qmp.send_fd(fd)
        fdset = (await qmp.execute("add-fd"))["fdset-id"]
    finally:
        os.close(fd)
    try:
        nodes[0] = {**nodes[0], "filename": f"/dev/fdset/{fdset}"}
        for args in nodes:
            await qmp.execute("blockdev-add", args)
    finally:
        # QEMU keeps its own duplicate while the node is open; the set goes with it
        await qmp.execute("remove-fd", {"fdset-id": fdset})


async def _device_del(backend: HasDevices, dom: Domain, dev_id: str) -> None:
    qmp = backend._qmp(dom)
    deleted = qmp.expect("DEVICE_DELETED")
    await qmp.execute("device_del", {"id": dev_id})
    try:
        while True:
            data = await asyncio.wait_for(asyncio.shield(deleted), RELEASE_TIMEOUT)
            if data.get("device") == dev_id:
                return
            deleted = qmp.expect("DEVICE_DELETED")
    except TimeoutError:
        deleted.cancel()
        raise DeviceError(f"the guest did not release {dev_id}") from None


def _with_disk(spec: DomainSpec, disk: DiskSpec) -> DomainSpec:
    disks = (*(d for d in spec.disks if d.device != disk.device), disk)
    return replace(spec, disks=disks, vbds=tuple(d.device for d in disks))


def _with_nic(spec: DomainSpec, nic: NicSpec) -> DomainSpec:
    nics = (*(n for n in spec.nics if n.device != nic.device), nic)
    return replace(spec, nics=nics, vifs=tuple(n.device for n in nics))
