"""A real guest on a qemu host whose switch is Open vSwitch, over the wire with the SDK.

VM.start plugs ``vif<domid>.<device>`` into xenbr0 with XenServer's external_ids; the guest
gets its lease from the dnsmasq beyond the PIF and its IP reaches VM_guest_metrics; its agent
keys are in the host's XenStore under its domain (``xenstore-ls``); VM.xenstore_data reaches
the guest; VM.clean_shutdown goes through ``control/shutdown`` to the real guest, and the
port goes with the domain.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from integkit import WAIT, OvsQemuHost, guest_ip, install, network_on, until

from xenstack.testing.guests import Console, run_dir

pytestmark = [pytest.mark.guest, pytest.mark.ovs, pytest.mark.root, pytest.mark.slow]


def xenstore_ls(host: OvsQemuHost, path: str) -> str:
    env = {**os.environ, "XENSTORED_PATH": str(host.state_dir / "run" / "xenstored" / "socket")}
    done = subprocess.run(
        [sys.executable, "-m", "xenstack.cli.dom0", "xenstore-ls", "-f", path],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout


@contextmanager
def serial_reader(path: Path) -> Iterator[Callable[[], str]]:
    """What the guest prints on its serial console from now until it goes."""
    got: list[bytes] = []
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(path))

    def read() -> None:
        while chunk := sock.recv(65536):
            got.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield lambda: b"".join(got).decode(errors="replace")
    finally:
        reader.join(WAIT)
        sock.close()


def port_ids(host: OvsQemuHost, port: str) -> dict[str, str]:
    raw = host.vsctl("--format=json", "get", "Interface", port, "external_ids")
    pairs = raw.strip()
    found: dict[str, str] = {}
    # ovs-vsctl prints a map as {k=v, k2="v 2"}
    for item in pairs.strip("{}").split(", "):
        if "=" in item:
            k, v = item.split("=", 1)
            found[k.strip('"')] = v.strip('"')
    return found


def test_guest_on_open_vswitch_end_to_end(host: OvsQemuHost, x: Any) -> None:
    net = network_on(x, "xenbr0")
    vm = install(x, "xi-ovs-guest", net)
    x.VM.add_to_xenstore_data(vm, "vm-data/xi-test", "hello-from-dom0")
    x.VM.start(vm, False, False)
    try:
        domid = int(x.VM.get_domid(vm))
        vif = x.VM.get_VIFs(vm)[0]
        mac = x.VIF.get_MAC(vif).lower()
        tap = f"vif{domid}.0"
        # 1. the port is on xenbr0 with XenServer's external_ids
        assert host.vsctl("port-to-br", tap).strip() == "xenbr0"
        ids = port_ids(host, tap)
        assert ids["xs-vm-uuid"] == x.VM.get_uuid(vm)
        assert ids["xs-vif-uuid"] == x.VIF.get_uuid(vif)
        assert ids["xs-network-uuid"] == x.network.get_uuid(net)
        assert ids["attached-mac"].lower() == mac
        # the lease came from the dnsmasq beyond the PIF, and the IP reached guest metrics
        ip = guest_ip(x, vm)
        seg = host.segments[0]
        assert ip.startswith(seg.subnet + "."), (ip, seg.subnet)
        until(lambda: mac in seg.leased_macs(), WAIT, "the lease in dnsmasq's file")
        # 2. the agent's keys are in the host's XenStore, under the guest's domain
        home = f"/local/domain/{domid}"

        def keys_there() -> str:
            out = xenstore_ls(host, home)
            return out if f"{home}/attr/vif/0/ipv4/0" in out else ""

        listing = until(keys_there, WAIT, "the agent's keys in XenStore")
        assert f'{home}/attr/vif/0/ipv4/0 = "{ip}"' in listing
        assert f"{home}/data/os_name" in listing
        assert f'{home}/control/feature-shutdown = "1"' in listing
        gm = x.VM.get_guest_metrics(vm)
        assert x.VM_guest_metrics.get_os_version(gm).get("distro")
        assert x.VM_guest_metrics.get_PV_drivers_detected(gm)
        # VM.xenstore_data is in the domain's vm-data/ and reached the guest
        assert f'{home}/vm-data/xi-test = "hello-from-dom0"' in listing
        con = Console(run_dir(host.state_dir, x.VM.get_uuid(vm)))
        con.wait_for("XSG-READY", WAIT)
        seen = until(
            lambda: "hello-from-dom0" in con.run_command("cat /run/xenstore/vm-data/xi-test"),
            WAIT,
            "vm-data/ in the guest",
        )
        assert seen
        # VM.clean_shutdown: control/shutdown reaches the real guest's agent (read on the
        # serial socket: the domain's run directory goes with it)
        with serial_reader(con.run / "serial.sock") as seen_on_console:
            x.VM.clean_shutdown(vm)
        assert x.VM.get_power_state(vm) == "Halted"
        assert "XSG-AGENT control/shutdown=poweroff" in seen_on_console()
        assert tap not in host.vsctl("list-ports", "xenbr0").split()
    finally:
        if x.VM.get_power_state(vm) != "Halted":
            x.VM.hard_shutdown(vm)
