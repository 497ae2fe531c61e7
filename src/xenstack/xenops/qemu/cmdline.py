"""The argv of one domain's QEMU, built from its :class:`DomainSpec` and nothing else.

Everything here is pure: the same spec, run directory and accelerator give the same argv.
The machine is ``pc`` (i440fx, as XenServer's ``xenfv``: disks and NICs hot-plug on its
root bus). Disks come from the toolstack's NBD exports over Unix sockets (with
``reconnect-delay``, so a toolstack restart under a running guest only stalls its I/O), CDs
from ISO files; NICs are taps named ``vif<domid>.<device>`` made by the switch hooks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..interface import DiskSpec, DomainSpec, NicSpec

MIB = 1 << 20
NBD_RECONNECT_DELAY = 30  # seconds QEMU keeps retrying a lost NBD server before I/O errors
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
AGENT_PORT = "org.xenstack.xenstore"


@dataclass(frozen=True, slots=True)
class RunDir:
    """The files of one domain, in ``<state>/run/qemu/<vm uuid>/``."""

    path: str

    @property
    def qmp(self) -> str:
        return os.path.join(self.path, "qmp.sock")

    @property
    def serial(self) -> str:
        return os.path.join(self.path, "serial.sock")

    @property
    def console_log(self) -> str:
        return os.path.join(self.path, "console.log")

    @property
    def vnc(self) -> str:
        return os.path.join(self.path, "vnc.sock")

    @property
    def agent(self) -> str:
        return os.path.join(self.path, "xs.sock")

    @property
    def pidfile(self) -> str:
        return os.path.join(self.path, "qemu.pid")

    @property
    def log(self) -> str:
        return os.path.join(self.path, "qemu.log")

    @property
    def nvram(self) -> str:
        return os.path.join(self.path, "OVMF_VARS.fd")

    @property
    def domain(self) -> str:
        return os.path.join(self.path, "domain.json")


def tap_name(domid: int, device: str) -> str:
    """XenServer's name for a VIF's host side: ``vif<domid>.<device>``."""
    return f"vif{domid}.{device}"


def node(device: str) -> str:
    return f"vbd{device}"


def disk_id(device: str) -> str:
    return f"vbd-{device}"


def nic_id(device: str) -> str:
    return f"vif-{device}"


def blockdev(disk: DiskSpec) -> list[dict[str, object]]:
    """The ``blockdev-add`` arguments that open ``disk`` (the last one is the drive)."""
    ro = disk.mode == "RO" or disk.kind == "CD"
    if disk.nbd_socket:
        return [
            {
                "driver": "nbd",
                "node-name": node(disk.device),
                "server": {"type": "unix", "path": disk.nbd_socket},
                "export": disk.export,
                "reconnect-delay": NBD_RECONNECT_DELAY,
                "read-only": ro,
            }
        ]
    file_node = node(disk.device) + "f"
    return [
        {"driver": "file", "node-name": file_node, "filename": disk.path, "read-only": ro},
        {"driver": "raw", "node-name": node(disk.device), "file": file_node, "read-only": ro},
    ]


def _keyvals(args: dict[str, object], prefix: str = "") -> list[str]:
    out = []
    for key, value in args.items():
        if isinstance(value, dict):
            out += _keyvals(value, f"{prefix}{key}.")
        elif isinstance(value, bool):
            out.append(f"{prefix}{key}={'on' if value else 'off'}")
        else:
            out.append(f"{prefix}{key}={str(value).replace(',', ',,')}")
    return out


def disk_device(disk: DiskSpec, bootindex: int | None) -> dict[str, object]:
    """The ``device_add`` arguments of ``disk``'s guest device."""
    boot = {} if bootindex is None else {"bootindex": bootindex}
    if disk.kind == "CD":
        number = int(disk.device) if disk.device.isdigit() else 3
        dev: dict[str, object] = {
            "driver": "ide-cd",
            "id": disk_id(disk.device),
            "bus": f"ide.{min(number, 3) // 2}",
            "unit": number % 2,
            **boot,
        }
        if not disk.empty:
            dev["drive"] = node(disk.device)
        return dev
    return {
        "driver": "virtio-blk-pci",
        "id": disk_id(disk.device),
        "drive": node(disk.device),
        **boot,
    }


def nic_device(nic: NicSpec, bootindex: int | None) -> dict[str, object]:
    dev: dict[str, object] = {
        "driver": "virtio-net-pci",
        "id": nic_id(nic.device),
        "netdev": f"net{nic.device}",
        "mac": nic.mac,
    }
    if nic.mtu and nic.mtu != 1500:
        dev["host_mtu"] = nic.mtu
    if bootindex is not None:
        dev["bootindex"] = bootindex
    return dev


def netdev(nic: NicSpec, domid: int) -> dict[str, object]:
    return {
        "type": "tap",
        "id": f"net{nic.device}",
        "ifname": tap_name(domid, nic.device),
        "script": "no",
        "downscript": "no",
    }


def _device_arg(dev: dict[str, object]) -> str:
    rest = {k: v for k, v in dev.items() if k != "driver"}
    return ",".join([str(dev["driver"]), *_keyvals(rest)])


def _netdev_arg(args: dict[str, object]) -> str:
    rest = {k: v for k, v in args.items() if k != "type"}
    return ",".join([str(args["type"]), *_keyvals(rest)])


def boot_indexes(spec: DomainSpec) -> dict[str, int]:
    """Boot order as device ids: ``order``'s letters (c disk, d CD, n network) in turn."""
    out: dict[str, int] = {}
    index = 1
    for letter in spec.boot.order or "cd":
        if letter == "c":
            chosen = [disk_id(d.device) for d in spec.disks if d.kind == "Disk" and not d.empty]
            chosen.sort(key=lambda i: 0 if i == _bootable(spec) else 1)
        elif letter == "d":
            chosen = [disk_id(d.device) for d in spec.disks if d.kind == "CD"]
        elif letter == "n":
            chosen = [nic_id(n.device) for n in spec.nics]
        else:
            continue
        for dev_id in chosen:
            if dev_id not in out:
                out[dev_id] = index
                index += 1
    return out


def _bootable(spec: DomainSpec) -> str:
    for d in spec.disks:
        if d.bootable:
            return disk_id(d.device)
    return ""


def argv(
    spec: DomainSpec,
    run: RunDir,
    domid: int,
    *,
    accel: str = "tcg",
    binary: str = "qemu-system-x86_64",
    incoming: str = "",
    runas: str = "",
) -> list[str]:
    """The whole argv of the domain's QEMU (``-daemonize``: it detaches once it runs)."""
    static = max(spec.memory_static_max, spec.memory_dynamic_max) // MIB
    serial = f"socket,id=ser0,path={run.serial},server=on,wait=off,logfile={run.console_log}"
    args = [
        binary,
        "-name", f"{spec.name or spec.vm_id},debug-threads=on",
        "-accel", accel if accel != "tcg" else "tcg,tb-size=64",
        "-M", "pc",
        "-nodefaults", "-no-user-config", "-display", "none",
        "-m", f"{max(static, 16)}",
        "-smp", f"{max(spec.vcpus, 1)},maxcpus={max(spec.vcpus_max, spec.vcpus, 1)}",
        "-qmp", f"unix:{run.qmp},server=on,wait=off",
        "-chardev", serial,
        "-serial", "chardev:ser0",
        "-vnc", f"unix:{run.vnc}",
        "-device", "VGA",
        "-device", "virtio-serial-pci,id=vser0",
        "-chardev", f"socket,id=xs,path={run.agent},server=on,wait=off",
        "-device", f"virtserialport,bus=vser0.0,chardev=xs,name={AGENT_PORT}",
        "-device", "virtio-balloon-pci,id=balloon0",
        "-device", "pvpanic",
        # every end of the guest is an exit the toolstack sees and handles (actions_after_*)
        "-action", "reboot=shutdown,shutdown=poweroff,panic=shutdown",
        "-sandbox", "on,obsolete=deny,resourcecontrol=deny",
        "-daemonize", "-pidfile", run.pidfile,
    ]  # fmt: skip
    if spec.uuid:
        args += ["-uuid", spec.uuid]
    if runas:
        args += ["-runas", runas]
    if spec.boot.kernel:
        args += ["-kernel", spec.boot.kernel]
        if spec.boot.ramdisk:
            args += ["-initrd", spec.boot.ramdisk]
        if spec.boot.kernel_args:
            args += ["-append", spec.boot.kernel_args]
    elif spec.boot.firmware == "uefi":
        args += [
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
            "-drive", f"if=pflash,format=raw,unit=1,file={run.nvram}",
        ]  # fmt: skip
    boot = boot_indexes(spec) if not spec.boot.kernel else {}
    for disk in spec.disks:
        if not disk.empty:
            for nodeargs in blockdev(disk):
                args += ["-blockdev", ",".join(_keyvals(nodeargs))]
        args += ["-device", _device_arg(disk_device(disk, boot.get(disk_id(disk.device))))]
    for nic in spec.nics:
        args += ["-netdev", _netdev_arg(netdev(nic, domid))]
        args += ["-device", _device_arg(nic_device(nic, boot.get(nic_id(nic.device))))]
    if incoming:
        args += ["-incoming", incoming]
    return args
