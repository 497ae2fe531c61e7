"""The network doctor finds each fault a test injects, names it, and says how to fix it:
``xe network-doctor`` on both switches, ``xenstack doctor network`` beside a running host on
Open vSwitch. Faults: a VIF port with its VLAN tag removed (the seed's bug), a port on the
wrong bridge, a drop flow, an MTU mismatch, a missing DHCP server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from netwire import Host
from test_switch_wire import network, started, vm_on
from test_traffic_wire import lease
from xekit import xe

from xenstack.net import VifSpec


def doctor(host: Host, vm: str) -> tuple[int, dict[str, Any]]:
    rc, out, _err = xe(host.pool, "network-doctor", f"vm={vm}", "interval=0.2", "--json")
    return rc, json.loads(out)


def errors(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The first error finding of each check."""
    found: dict[str, dict[str, str]] = {}
    for r in report["reports"]:
        for f in r["findings"]:
            if f["severity"] == "error":
                found.setdefault(f["check"], f)
    return found


def vlan_vm(host: Host, label: str, mtu: int = 1500) -> tuple[str, str, str]:
    x = host.x
    net = network(x, f"{label}-net", mtu=mtu)
    x.VLAN.create(host.pif(), "100", net)
    vm, vif = vm_on(x, net, label)
    return vm, vif, started(host, vm)


def test_a_healthy_vif_passes(host: Host) -> None:
    vlan_vm(host, "fine")
    rc, report = doctor(host, "fine")
    assert (rc, report["healthy"], errors(report)) == (0, True, {})
    checks = {f["check"] for r in report["reports"] for f in r["findings"]}
    assert {"bridge", "ofport", "external_ids", "mtu", "flows", "dhcp"} <= checks
    rc, out, _ = xe(host.pool, "network-doctor", "vm=fine", "interval=0")
    assert rc == 0 and "healthy" in out and "on xapi" in out


def test_the_seeds_bug_a_port_without_its_vlan_tag(host: Host) -> None:
    _, _, name = vlan_vm(host, "untagged")
    host.run(lambda: host.switch.set_port(name, tag=-1))
    rc, report = doctor(host, "untagged")
    found = errors(report)["vlan"]
    assert rc == 1 and "no VLAN tag" in found["message"] and "VLAN 100" in found["message"]
    assert found["fix"] == f"ovs-vsctl set port {name} tag=100"
    rc, out, err = xe(host.pool, "network-doctor", "vm=untagged", "interval=0")
    assert rc == 1 and "PROBLEMS FOUND" in out and "tag=100" in out
    assert "found problems" in err


def test_a_port_on_the_wrong_bridge(host: Host) -> None:
    x = host.x
    _vm, vif, name = vlan_vm(host, "astray")
    net = network(x, "elsewhere")
    other, mac = x.network.get_bridge(net), x.VIF.get_MAC(vif)
    ids = tuple(sorted(host.ports()[name].external_ids.items()))

    async def misplace() -> None:  # on the toolstack's loop: no XenAPI calls in here
        from xenstack.impl.network.ports import ensure_network

        assert host.pool.toolstack is not None
        await ensure_network(host.pool.toolstack, net)
        await host.switch.attach_vif(VifSpec(name, other, mac, 1500, ids))

    host.run(misplace)
    rc, report = doctor(host, "astray")
    found = errors(report)["bridge"]
    assert rc == 1 and f"on bridge {other}" in found["message"]
    assert (
        "add-port" in found["fix"]
        and x.network.get_bridge(x.VIF.get_network(vif)) in (found["fix"])
    )


def test_a_drop_flow(host: Host) -> None:
    _, _, name = vlan_vm(host, "dropped")
    port = host.ports()[name]
    flow = f"priority=9000,in_port={port.ofport},actions=drop"
    host.run(lambda: host.switch.add_flow(port.parent, flow))
    rc, report = doctor(host, "dropped")
    found = errors(report)["flows"]
    assert rc == 1 and "drops DHCP discover" in found["message"] and "9000" in found["message"]
    assert found["fix"].startswith(f"ovs-ofctl del-flows {port.parent}")


def test_an_mtu_mismatch(host: Host) -> None:
    _, _, name = vlan_vm(host, "jumbo", mtu=9000)
    host.run(lambda: host.switch.set_mtu(name, 1500))
    rc, report = doctor(host, "jumbo")
    found = errors(report)["mtu"]
    assert (
        rc == 1 and f"{name} has MTU 1500" in found["message"] and "MTU 9000" in (found["message"])
    )
    assert found["fix"] == f"ovs-vsctl set interface {name} mtu_request=9000"


@pytest.mark.ovs
@pytest.mark.root
def test_a_missing_dhcp_server(ovs_host: Host) -> None:
    x = ovs_host.x
    net = network(x, "served", **{"xenstack-dhcp": "10.77.0.1/24"})
    toolstack = ovs_host.pool.toolstack
    assert toolstack is not None
    ovs_host.run(lambda: toolstack.network.ensure_dhcp(net))
    vm, _ = vm_on(x, net, "client")
    name = started(ovs_host, vm)
    assert ovs_host.kit.guests is not None
    assert lease(ovs_host.kit.guests.guest_ns(name)).startswith("10.77.0.")
    rc, report = doctor(ovs_host, "client")
    dhcp = [f for r in report["reports"] for f in r["findings"] if f["check"] == "dhcp"]
    assert rc == 0 and "answer came back" in dhcp[0]["message"]
    server = toolstack.network.dhcp[net]
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while server.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    rc, report = doctor(ovs_host, "client")
    found = errors(report)["dhcp"]
    assert rc == 1 and "not running" in found["message"] and "dnsmasq" in found["fix"]


@pytest.mark.ovs
@pytest.mark.root
def test_the_doctor_command_beside_a_running_host(ovs_host: Host) -> None:
    _, _, name = vlan_vm(ovs_host, "beside")
    state = str(ovs_host.pool.state_dir)
    argv = [
        sys.executable,
        "-m",
        "xenstack.cli.main",
        "doctor",
        "network",
        "--state-dir",
        state,
        "--vm",
        "beside",
        "--interval",
        "0.2",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "healthy" in done.stdout
    ovs_host.run(lambda: ovs_host.switch.set_port(name, tag=-1))
    done = subprocess.run([*argv, "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert errors(report)["vlan"]["fix"] == f"ovs-vsctl set port {name} tag=100"
