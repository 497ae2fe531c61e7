"""The real-guest side of the OpenStack tests: a qemu host on Open vSwitch
(``qemu_xenstack.py``, run by the project's interpreter as a child whose stdin holds it up),
the standalone Glance holding the test guest as a bootable raw image (``boot_image.py``), and
what a test reads of a guest. Needs root, QEMU, dnsmasq, Open vSwitch, mtools and syslinux:
:func:`missing` names what is absent (the tests skip, or fail when CI is set)."""

from __future__ import annotations

import atexit
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from typing import Any

import boot_image
import XenAPI
import xenstack_server

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = ("qemu-system-x86_64", "dnsmasq", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl",
         "ovs-ofctl", *boot_image.TOOLS)  # fmt: skip
WAIT = 240.0  # seconds: this machine's load swings from 1 to 13
PROVIDER_VLAN = 1000  # the segment beyond the PIF that neutron's agent translates to


def missing() -> str:
    absent = [t for t in TOOLS if shutil.which(t) is None]
    if absent:
        return f"tools missing: {absent}"
    if os.geteuid() != 0:
        return "needs root (network namespaces, QEMU's taps)"
    return ""


def skip_or_fail(test: Any) -> None:
    reason = missing()
    if reason:
        if os.environ.get("CI"):
            test.fail(reason + " and CI is set: this test must run")
        test.skipTest(reason)


def until(fn: Any, what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class QemuHost:
    """``qemu_xenstack.py`` as a child process; ``info`` is its JSON line."""

    def __init__(self) -> None:
        python = os.environ.get("XENSTACK_PYTHON") or str(xenstack_server.REPO / ".venv/bin/python")
        env = dict(os.environ, PYTHONPATH=str(xenstack_server.REPO / "src"))
        env.pop("OS_NOVA_DISABLE_EVENTLET_PATCHING", None)
        self.proc = subprocess.Popen(
            [python, os.path.join(HERE, "qemu_xenstack.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
        )  # fmt: skip
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            self.stop()
            raise RuntimeError("the qemu host did not start")
        self.info: dict[str, Any] = json.loads(line)
        self.url: str = self.info["url"]
        self.password: str = self.info["password"]

    def flags(self) -> dict[str, Any]:
        """The [xenserver] options that point a driver at this host."""
        return {
            "connection_url": self.url,
            "connection_username": "root",
            "connection_password": self.password,
            "image_handler": "vdi_remote_stream",
            "use_agent_default": True,
            "agent_timeout": int(WAIT),
        }

    def session(self) -> XenAPI.Session:
        s = XenAPI.Session(self.url)
        s.xenapi.login_with_password("root", self.password, "1.0", "n3-openstack")
        return s

    def leased(self, vlan: int, mac: str) -> str:
        """The address the DHCP server of segment ``vlan`` leased to ``mac`` ("" if none)."""
        try:
            with open(self.info["leases"][str(vlan)]) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return ""
        for line in lines:
            parts = line.split()
            if len(parts) > 2 and parts[1].lower() == mac.lower():
                return parts[2]
        return ""

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_SHARED: QemuHost | None = None


def shared() -> QemuHost:
    """One qemu host for every real-guest test of this process (started on first use,
    stopped at exit): a host takes longer to start than most of these tests take."""
    global _SHARED
    if _SHARED is None:
        _SHARED = QemuHost()
        atexit.register(_SHARED.stop)
    return _SHARED


def guest_ip(x: Any, vm: str, timeout: float = WAIT) -> str:
    """Interface 0's address as the guest's agent reports it in VM_guest_metrics."""

    def ip() -> str:
        gm = x.VM.get_guest_metrics(vm)
        if gm == "OpaqueRef:NULL":
            return ""
        try:
            return str(x.VM_guest_metrics.get_networks(gm).get("0/ip", ""))
        except XenAPI.Failure:
            return ""

    return str(until(ip, f"an IP for {vm}", timeout))


def upload_guest_image(images: Any, ctx: Any) -> str:
    """The test guest into Glance (nova's image API): ``disk_format=raw``; its id."""
    tmp = tempfile.mkdtemp(prefix="n3-image-")
    try:
        path = boot_image.make(os.path.join(tmp, "xsg.raw"))
        meta = {
            "name": f"n3-xsg-{uuid.uuid4()}",
            "disk_format": "raw",
            "container_format": "bare",
            "visibility": "private",
            "properties": {"os_type": "linux", "xenapi_use_agent": "true"},
        }
        with open(path, "rb") as f:
            image = images.create(ctx, meta, data=io.BytesIO(f.read()))
        return str(image["id"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
