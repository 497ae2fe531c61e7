"""A real guest over the wire with the PyPI XenAPI SDK, on a qemu host.

Install from the "xenstack test guest" template, start, see its IP in guest metrics, write a
marker on its disk, snapshot it running, write again, clone the snapshot and find only the
first marker; pause, suspend and resume (uptime goes on), clean reboot, a hot-plugged disk
the guest sees, clean and hard shutdown.
"""

from __future__ import annotations

import socket
import urllib.request
from typing import Any

import pytest
from conftest import console, guest_ip, install, until

from xenstack.testing.guests import QemuHost

pytestmark = [pytest.mark.qemu, pytest.mark.guest, pytest.mark.root, pytest.mark.slow]

SECTOR = 4096  # where the markers go on /dev/vda (in 512-byte sectors)


def write_marker(con: Any, text: str) -> None:
    con.run_command(
        f"printf '%-16s' {text} | dd of=/dev/vda bs=512 seek={SECTOR} conv=fsync 2>/dev/null"
    )


def disk_bytes(host: QemuHost, x: Any, vdi: str, session: str) -> bytes:
    url = f"{host.url}export_raw_vdi?session_id={session}&vdi={vdi}&format=raw"
    with urllib.request.urlopen(url, timeout=120) as r:
        data = r.read()
    return data[SECTOR * 512 : SECTOR * 512 + 16]


def connect(host: QemuHost, location: str, session: str) -> bytes:
    """``CONNECT`` the console's location on the host; the first bytes of the answer."""
    path = location.split("/", 3)[3] + (f"&session_id={session}" if session else "")
    with socket.create_connection(("127.0.0.1", host.server.port), timeout=60) as s:
        s.sendall(f"CONNECT /{path} HTTP/1.0\r\n\r\n".encode())
        data = b""
        while b"RFB" not in data and len(data) < 4096:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data


def uptime(con: Any) -> float:
    return float(con.run_command("cat /proc/uptime").split()[0])


def new_disk(x: Any, vm: str, name: str, userdevice: str, attached: bool = False) -> str:
    """A new 16 MiB disk on the pool's default SR, its VBD at ``userdevice``."""
    sr = x.pool.get_default_SR(x.pool.get_all()[0])
    vdi = x.VDI.create({"name_label": name, "SR": sr, "virtual_size": str(16 << 20),
                        "type": "user", "sharable": False, "read_only": False,
                        "other_config": {}})  # fmt: skip
    return str(x.VBD.create({"VM": vm, "VDI": vdi, "userdevice": userdevice, "bootable": False,
                             "mode": "RW", "type": "Disk", "empty": False, "other_config": {},
                             "currently_attached": attached, "qos_algorithm_type": "",
                             "qos_algorithm_params": {}}))  # fmt: skip


def test_the_host_shows_the_machine(x: Any) -> None:
    [me] = x.host.get_all()
    until(lambda: "accelerator" in x.host.get_cpu_info(me), what="the KVM probe's verdict")
    info = x.host.get_cpu_info(me)
    assert info["accelerator"] in ("kvm", "tcg")
    with open("/proc/cpuinfo") as f:
        cpuinfo = f.read()
    assert int(info["cpu_count"]) == cpuinfo.count("processor\t:")
    vendor = cpuinfo.split("vendor_id\t: ", 1)[1].split("\n", 1)[0]
    # the pool's record too: what a joining host's CPUs are compared with
    [pool] = x.pool.get_all()
    assert info["vendor"] == x.pool.get_cpu_info(pool)["vendor"] == vendor
    with open("/proc/meminfo") as f:
        total = int(f.readline().split()[1]) * 1024
    assert int(x.host_metrics.get_memory_total(x.host.get_metrics(me))) == total
    assert any(c.startswith("qemu-") for c in x.host.get_capabilities(me))


def test_a_real_guest_through_its_lifecycle(host: QemuHost, sdk: Any, x: Any) -> None:
    vm = install(x, "xq-life")
    x.VM.start(vm, False, False)
    assert x.VM.get_power_state(vm) == "Running"
    ip = guest_ip(x, vm)
    assert ip.startswith("10.77.0.")
    gm = x.VM.get_guest_metrics(vm)
    assert x.VM_guest_metrics.get_os_version(gm)["distro"] == "xsg"
    assert x.VM_guest_metrics.get_PV_drivers_version(gm)["major"] == "9"
    con = console(host, x, vm)
    con.wait_for("XSG-READY")

    # the console relays RFB through CONNECT, with a session only
    [rfb] = [c for c in x.VM.get_consoles(vm) if x.console.get_protocol(c) == "rfb"]
    location = x.console.get_location(rfb)
    assert "/console?uuid=" in location  # as xapi_xenops.ml locates a domain's console
    answer = connect(host, location, sdk._session)
    assert answer.startswith(b"HTTP/1.1 200") and b"RFB 003.00" in answer
    refused = connect(host, location, "")
    assert refused.startswith(b"HTTP/1.1 403") and b"SESSION_INVALID" in refused

    # a snapshot of the running guest holds exactly what was written before it
    write_marker(con, "MARK-ONE")
    snap = x.VM.snapshot(vm, "xq-snap")
    write_marker(con, "MARK-TWO")
    clone = x.VM.clone(snap, "xq-from-snap")
    session = sdk._session
    disk_of = lambda v: next(  # noqa: E731
        x.VBD.get_VDI(b) for b in x.VM.get_VBDs(v) if x.VBD.get_type(b) == "Disk"
    )
    assert disk_bytes(host, x, disk_of(clone), session).strip() == b"MARK-ONE"

    # pause, suspend and resume: the same guest goes on
    x.VM.pause(vm)
    assert x.VM.get_power_state(vm) == "Paused"
    x.VM.unpause(vm)
    before = uptime(con)
    x.VM.suspend(vm)
    assert x.VM.get_power_state(vm) == "Suspended"
    assert x.VDI.get_type(x.VM.get_suspend_VDI(vm)) == "suspend"
    # a disk given to the suspended VM (attached, as XAPI allows) is plugged at resume
    new_disk(x, vm, "xq-woken", "1", attached=True)
    x.VM.resume(vm, False, False)
    assert x.VM.get_power_state(vm) == "Running"
    con = console(host, x, vm)
    assert uptime(con) > before
    assert guest_ip(x, vm) == ip  # the agent reports again, from the same guest
    until(lambda: "vdb" in con.run_command("ls /sys/block"), what="vdb in the resumed guest")

    # a disk hot-plugged into the running guest appears in it
    x.VBD.plug(new_disk(x, vm, "xq-hot", "2"))
    until(lambda: "vdc" in con.run_command("ls /sys/block"), what="vdc in the guest")

    # clean reboot: a new domain, the agent reports again
    domid = x.VM.get_domid(vm)
    x.VM.clean_reboot(vm)
    assert x.VM.get_domid(vm) != domid
    guest_ip(x, vm)

    x.VM.clean_shutdown(vm)
    assert x.VM.get_power_state(vm) == "Halted"
    # the marker written last is on the VM's own disk
    assert disk_bytes(host, x, disk_of(vm), session).strip() == b"MARK-TWO"
    x.VM.start(vm, False, False)
    x.VM.hard_shutdown(vm)
    assert x.VM.get_power_state(vm) == "Halted"
    assert not (con.run / "qmp.sock").exists()
    assert x.VM.get_consoles(vm) == []
