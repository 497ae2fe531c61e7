"""Issue 12's packet tests with real guests on a qemu host whose switch is Open vSwitch.

Two guests on one internal network ping each other (and not once one is gone), while
``ovsdb-client monitor Interface name,ofport`` sees their ports appear; a guest on a VLAN
network gets its lease from the dnsmasq on that VLAN beyond the PIF and none from another; the
network doctor on a real guest's VIF whose tag was removed names the fault.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from integkit import WAIT, OvsQemuHost, guest_ip, install, until

from xenstack.testing.guests import Console, run_dir

pytestmark = [pytest.mark.guest, pytest.mark.ovs, pytest.mark.root, pytest.mark.slow]


def new_network(x: Any, label: str) -> str:
    return str(x.network.create({"name_label": label, "name_description": "", "MTU": "1500",
                                 "other_config": {}, "tags": []}))  # fmt: skip


def console(host: OvsQemuHost, x: Any, vm: str) -> Console:
    con = Console(run_dir(host.state_dir, x.VM.get_uuid(vm)))
    con.wait_for("XSG-READY", WAIT)
    return con


def started(x: Any, vm: str) -> str:
    x.VM.start(vm, False, False)
    return f"vif{x.VM.get_domid(vm)}.0"


def halt(x: Any, *vms: str) -> None:
    for vm in vms:
        if x.VM.get_power_state(vm) != "Halted":
            x.VM.hard_shutdown(vm)


def pif_of(x: Any, host: OvsQemuHost) -> str:
    return str(next(r for r, p in x.PIF.get_all_records().items() if p["device"] == host.pif))


def vlan_network(x: Any, host: OvsQemuHost, tag: int) -> str:
    """The network of VLAN ``tag`` on the host's PIF (made at first use)."""
    for pif in x.PIF.get_all_records().values():
        if pif["VLAN"] == str(tag):
            return str(pif["network"])
    net = new_network(x, f"xi-vlan{tag}")
    x.VLAN.create(pif_of(x, host), str(tag), net)
    return net


def test_two_guests_on_an_internal_network_ping_and_ovsdb_sees_their_ports(
    host: OvsQemuHost, x: Any
) -> None:
    net = new_network(x, "xi-internal")
    a_vm, b_vm = install(x, "xi-a", net), install(x, "xi-b", net)
    monitor = subprocess.Popen(
        ["ovsdb-client", "monitor", f"unix:{host.state_dir}/ovs/db.sock", "Open_vSwitch",
         "Interface", "name,ofport"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        a_port, b_port = started(x, a_vm), started(x, b_vm)
        bridge = x.network.get_bridge(net)
        assert {a_port, b_port} <= set(host.vsctl("list-ports", bridge).split())
        a, b = console(host, x, a_vm), console(host, x, b_vm)
        a.run_command("ip addr add 10.51.0.1/24 dev eth0")
        b.run_command("ip addr add 10.51.0.2/24 dev eth0")
        assert "ALIVE" in a.run_command("ping -c 3 -W 2 10.51.0.2 >/dev/null && echo ALIVE")
        x.VM.hard_shutdown(b_vm)
        assert "DEAD" in a.run_command("ping -c 2 -W 1 10.51.0.2 >/dev/null || echo DEAD")
    finally:
        monitor.terminate()
        out = monitor.communicate(timeout=60)[0]
        halt(x, a_vm, b_vm)
    for port in (a_port, b_port):  # each appeared with its OpenFlow port number
        rows = [line.split() for line in out.splitlines() if port in line.split()]
        assert any(r[-1].isdigit() and int(r[-1]) > 0 for r in rows), (port, out)


def test_a_vlan_guest_gets_its_vlans_lease_and_no_other(host: OvsQemuHost, x: Any) -> None:
    v100 = vlan_network(x, host, 100)
    vlan_network(x, host, 200)  # VLAN 200 has a DHCP server of its own beyond the PIF
    vm = install(x, "xi-on100", v100)
    try:
        port = started(x, vm)
        assert host.vsctl("get", "port", port, "tag").strip() == "100"
        mac = x.VIF.get_MAC(x.VM.get_VIFs(vm)[0]).lower()
        ip = guest_ip(x, vm)
        assert ip.startswith(host.segments[100].subnet + "."), ip
        assert mac in host.segments[100].leased_macs()
        assert mac not in host.segments[200].leased_macs()
        assert mac not in host.segments[0].leased_macs()
    finally:
        halt(x, vm)


def xe(host: OvsQemuHost, *args: str) -> tuple[int, str]:
    extra = f"server=127.0.0.1,port={host.server.port},username=root,password={host.password}"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "xe"), *args],
        env={**os.environ, "XE_EXTRA_ARGS": extra}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return done.returncode, done.stdout or done.stderr


def test_the_doctor_names_a_real_guests_vif_without_its_tag(host: OvsQemuHost, x: Any) -> None:
    net = vlan_network(x, host, 100)
    vm = install(x, "xi-doctor", net)
    try:
        port = started(x, vm)
        guest_ip(x, vm)  # a real guest, up and talking
        rc, out = xe(host, "network-doctor", "vm=xi-doctor", "interval=0.2", "--json")
        assert rc == 0 and json.loads(out)["healthy"], (rc, out)
        host.vsctl("clear", "port", port, "tag")
        rc, out = until(
            lambda: (
                (r := xe(host, "network-doctor", "vm=xi-doctor", "interval=0.2", "--json"))
                and r[0] == 1
                and r
            ),
            WAIT,
            "the doctor seeing the fault",
        )
        found = [f for r in json.loads(out)["reports"] for f in r["findings"]
                 if f["severity"] == "error"]  # fmt: skip
        assert any("no VLAN tag" in f["message"] and "VLAN 100" in f["message"] for f in found)
        assert any(f["fix"] == f"ovs-vsctl set port {port} tag=100" for f in found), found
    finally:
        halt(x, vm)
