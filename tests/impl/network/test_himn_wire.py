"""The host-internal management network on a real switch, as XenServer has it: the host at
169.254.0.1, a dnsmasq handing guests 169.254.0.x, and the XenAPI at http://169.254.0.1/
(how the seeds' compute VM reaches its hypervisor); off on the simulated switch."""

from __future__ import annotations

import subprocess
import sys

import pytest
from netwire import Host
from test_switch_wire import started, vm_on
from test_traffic_wire import lease

from xenstack.testing.network import netns_exec


def himn(host: Host) -> str:
    (net,) = [
        r
        for r, row in host.x.network.get_all_records().items()
        if row["other_config"].get("is_host_internal_management_network") == "true"
    ]
    return str(net)


@pytest.mark.ovs
@pytest.mark.root
@pytest.mark.slow
def test_guest_on_the_himn_gets_an_address_and_reaches_the_xenapi(ovs_host: Host) -> None:
    x = ovs_host.x
    net = himn(ovs_host)
    assert x.network.get_bridge(net) in ovs_host.bridges()
    vm, _ = vm_on(x, net, "compute")
    ns = ovs_host.kit.guests.guest_ns(started(ovs_host, vm))  # type: ignore[union-attr]
    address = lease(ns)
    assert address.startswith("169.254.0.") and address != "169.254.0.1"
    netns_exec(ns, "ip", "addr", "add", f"{address}/16", "dev", "eth0")
    script = (
        "import XenAPI; s = XenAPI.Session('http://169.254.0.1/'); "
        "s.xenapi.login_with_password('root', 'xenstack', '1.0', 'compute-vm'); "
        "print(s.xenapi.VM.get_name_label(s.xenapi.VM.get_by_uuid(sys.argv[1])))"
    )
    done = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            ns,
            sys.executable,
            "-c",
            "import sys; " + script,
            x.VM.get_uuid(vm),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.strip() == "compute", done.stderr


def test_the_himn_is_off_on_a_simulated_switch(host: Host) -> None:
    if host.real:
        pytest.skip("the simulated switch's half")
    bridge = host.x.network.get_bridge(himn(host))
    assert bridge not in host.bridges()
    toolstack = host.pool.toolstack
    assert toolstack is not None and toolstack.network.dhcp == {}
