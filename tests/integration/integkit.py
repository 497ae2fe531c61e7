"""A qemu host on Open vSwitch for the integration tests, and what they poll with.

:func:`ovs_qemu_host` makes, with the test's prefix ``xi``:

- a switch namespace (QEMU, its taps and the private OVS daemons run there, IP-less);
- a "physical" namespace beyond a veth pair whose switch end is the host's only PIF
  (``xenstack init --pif``), TX offload off on both ends, holding a dnsmasq per segment
  (untagged, and one per VLAN asked for on a VLAN sub-interface);
- ``xenstack init --backend qemu --switch openvswitch --netns SW --pif DEV`` and
  ``xenstack serve --switch openvswitch --netns SW`` as processes.

Everything is removed at the end by id: the server (SIGTERM), the guests' QEMUs (by pid file),
the dnsmasqs (by pid file) and the namespaces (by name).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import XenAPI

from xenstack.testing.guests import guest_image_dir, stop_guests
from xenstack.testing.network import Namespaces, sh
from xenstack.testing.pool import ServerProcess, free_port

PREFIX = "xi"
WAIT = 180.0  # this machine's load swings from 1 to 13: wait on events, generously


def until(check: Callable[[], Any], timeout: float = WAIT, what: str = "") -> Any:
    """Poll ``check`` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(what or repr(check))


@dataclass
class Segment:
    """A DHCP server beyond the PIF: untagged (``vlan`` 0) or on a VLAN sub-interface."""

    vlan: int
    subnet: str  # "10.78.0"
    leases: Path
    pidfile: Path
    netns: str = ""

    def leased_macs(self) -> set[str]:
        try:
            lines = self.leases.read_text().splitlines()
        except FileNotFoundError:
            return set()
        return {line.split()[1].lower() for line in lines if len(line.split()) > 2}


@dataclass
class OvsQemuHost:
    server: ServerProcess
    state_dir: Path
    sw_ns: str
    phys_ns: str  # unused: the physical switch is an OVS bridge in sw_ns
    pif: str
    segments: dict[int, Segment] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def password(self) -> str:
        return self.server.password

    def vsctl(self, *argv: str) -> str:
        return sh(["ovs-vsctl", f"--db=unix:{self.state_dir}/ovs/db.sock", "--timeout=30", *argv])

    def in_sw(self, *argv: str, check: bool = True) -> str:
        return sh(["ip", "netns", "exec", self.sw_ns, *argv], check=check)


def _dnsmasq(ns: str, dev: str, seg: Segment) -> None:
    sh(["ip", "-n", ns, "addr", "add", f"{seg.subnet}.1/24", "dev", dev])
    sh(["ip", "-n", ns, "link", "set", dev, "up"])
    sh(["ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off"], check=False)
    sh(["ip", "netns", "exec", ns, "dnsmasq", "--conf-file=/dev/null", "--port=0",
        f"--interface={dev}", "--bind-interfaces",
        f"--dhcp-range={seg.subnet}.100,{seg.subnet}.199,255.255.255.0,1h",
        "--dhcp-authoritative", "--no-ping", f"--dhcp-leasefile={seg.leases}",
        f"--pid-file={seg.pidfile}"])  # fmt: skip


def _kill_pidfile(path: Path) -> None:
    try:
        pid = int(path.read_text().strip() or "0")
    except (OSError, ValueError):
        return
    if pid > 0:
        with suppress(ProcessLookupError):
            os.kill(pid, 15)


def _physical_switch(
    host: OvsQemuHost, spaces: Namespaces, far: str, vlans: tuple[int, ...], tmp: Path
) -> None:
    """The network beyond the PIF: this kernel has no 802.1Q module (nor VLAN-filtering
    bridges), so the physical switch is a bridge of its own in the same Open vSwitch, unknown
    to xenstack: the PIF's far end is its trunk port, and each DHCP server's namespace hangs
    on an access port of its VLAN (``0``: untagged)."""
    phys = f"{PREFIX}phys{spaces.prefix[len(PREFIX) :]}"
    host.vsctl("add-br", phys, "--", "set", "bridge", phys, "datapath_type=netdev",
               "fail_mode=standalone", "--", "add-port", phys, far)  # fmt: skip
    for vlan in vlans:
        subnet = f"10.{78 if vlan == 0 else vlan % 250}.{secrets.randbelow(200)}"
        seg = Segment(vlan, subnet, tmp / f"l{vlan}", tmp / f"d{vlan}.pid")
        ns = spaces.add(f"d{vlan}")
        end = f"{spaces.prefix}d{vlan}"
        spaces.veth(end, host.sw_ns, "eth0", ns)
        host.vsctl("add-port", phys, end, *([f"tag={vlan}"] if vlan else []))
        _dnsmasq(ns, "eth0", seg)
        seg.netns = ns
        host.segments[vlan] = seg


@contextmanager
def ovs_qemu_host(vlans: tuple[int, ...] = ()) -> Iterator[OvsQemuHost]:
    """A qemu host whose switch is Open vSwitch, DHCP beyond its PIF (see the module)."""
    guest_image_dir()
    spaces = Namespaces(PREFIX)
    segments: dict[int, Segment] = {}
    with tempfile.TemporaryDirectory(prefix="xi-") as tmp:
        state = Path(tmp) / "s"  # short: unix sockets live under it
        os.chmod(tmp, 0o711)  # QEMU's own user passes (xenops/qemu/runas.py)
        server: ServerProcess | None = None
        try:
            sw = spaces.add("sw")
            sh(["ip", "netns", "exec", sw, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])
            pif, far = f"{spaces.prefix}p", f"{spaces.prefix}q"
            spaces.veth(pif, sw, far, sw)
            cli = [sys.executable, "-m", "xenstack.cli.main"]
            switch = ["--switch", "openvswitch", "--netns", sw]
            init = [*cli, "init", "--state-dir", str(state), "--backend", "qemu", *switch]
            subprocess.run([*init, "--pif", pif], check=True, timeout=180, capture_output=True)
            server = ServerProcess(state, free_port(), switch)
            server.start(timeout=180)
            made = OvsQemuHost(server, state, sw, "", pif, segments)
            _physical_switch(made, spaces, far, (0, *vlans), Path(tmp))
            yield made
        finally:
            if server is not None:
                server.stop()
            stop_guests(state)
            for seg in segments.values():
                _kill_pidfile(seg.pidfile)
            spaces.close()


@contextmanager
def sdk_session(host: OvsQemuHost) -> Iterator[Any]:
    session = XenAPI.Session(host.url)
    session.xenapi.login_with_password("root", host.password, "1.0", "xi-tests")
    try:
        yield session.xenapi
    finally:
        session.xenapi.session.logout()


def install(x: Any, name: str, network: str, device: str = "0") -> str:
    """A VM from the "xenstack test guest" template with one VIF on ``network``."""
    template = x.VM.get_by_name_label("xenstack test guest")[0]
    vm = x.VM.clone(template, name)
    x.VM.provision(vm)
    vif = {"VM": vm, "network": network, "device": device, "MAC": "", "MTU": "1500"}
    x.VIF.create({**vif, "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}})
    return str(vm)


def network_on(x: Any, bridge: str) -> str:
    return str(next(n for n in x.network.get_all() if x.network.get_bridge(n) == bridge))


def guest_ip(x: Any, vm: str, timeout: float = WAIT) -> str:
    """Wait for the guest's agent to report interface 0's address in VM_guest_metrics."""

    def ip() -> str:
        gm = x.VM.get_guest_metrics(vm)
        if gm == "OpaqueRef:NULL":
            return ""
        try:
            return str(x.VM_guest_metrics.get_networks(gm).get("0/ip", ""))
        except XenAPI.Failure:
            return ""

    return str(until(ip, timeout, f"an IP for {vm}"))
