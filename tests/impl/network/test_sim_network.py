"""Networks, VLANs, bonds, tunnels and PIF configuration over the wire."""

from __future__ import annotations

from typing import Any

from sim_helpers import pool_master, running_vm, vif_record

from xenstack.testing import failure


def _net(session: Any, label: str, bridge: str = "") -> str:
    record = {
        "name_label": label,
        "name_description": "",
        "MTU": "0",
        "other_config": {},
        "bridge": bridge,
        "tags": [],
    }
    return str(session.xenapi.network.create(record))


def _pif(session: Any, device: str, host: str | None = None) -> str:
    host = host or pool_master(session)
    for ref in session.xenapi.host.get_PIFs(host):
        record = session.xenapi.PIF.get_record(ref)
        if record["device"] == device and record["VLAN"] == "-1":
            return str(ref)
    raise AssertionError(device)


def test_networking_setup_like_a_cloud_driver(session: Any, xenstack_pool: Any) -> None:
    """Three private networks, a VM with a VIF on each, the bridges read back."""
    nets = [_net(session, f"net{i}") for i in range(3)]
    bridges = [session.xenapi.network.get_bridge(n) for n in nets]
    assert all(b.startswith("xapi") for b in bridges) and len(set(bridges)) == 3
    assert session.xenapi.network.get_MTU(nets[0]) == "1500"
    vm = running_vm(session, xenstack_pool)
    for net in nets:
        device = session.xenapi.VM.get_allowed_VIF_devices(vm)[0]
        vif = session.xenapi.VIF.create(vif_record(vm, net, device))
        session.xenapi.VIF.plug(vif)
    devices = sorted(session.xenapi.VIF.get_device(v) for v in session.xenapi.VM.get_VIFs(vm))
    assert len(devices) == 3 and len(set(devices)) == 3
    vif = session.xenapi.network.get_VIFs(nets[0])[0]
    assert failure(session.xenapi.network.destroy, nets[0]) == ["NETWORK_CONTAINS_VIF", vif]
    session.xenapi.VIF.unplug(vif)
    session.xenapi.network.destroy(nets[0])
    assert failure(session.xenapi.VIF.get_record, vif)[0] == "HANDLE_INVALID"


def test_system_networks_cannot_go(session: Any) -> None:
    nets = {r["bridge"]: ref for ref, r in session.xenapi.network.get_all_records().items()}
    err = failure(session.xenapi.network.destroy, nets["xenbr0"])
    assert err[0] == "NETWORK_CONTAINS_PIF"
    assert failure(session.xenapi.network.destroy, nets["xenapi"]) == [
        "CANNOT_DESTROY_SYSTEM_NETWORK",
        nets["xenapi"],
    ]
    assert failure(_net, session, "dup", "xapi-mine")[0] == "INVALID_VALUE"
    _net(session, "mine", "br-mine")
    assert failure(_net, session, "dup", "br-mine") == ["BRIDGE_NAME_EXISTS", "br-mine"]


def test_vlans(session: Any) -> None:
    net = _net(session, "vlan 100")
    pifs = session.xenapi.pool.create_VLAN("eth1", net, "100")
    assert len(pifs) == len(session.xenapi.host.get_all())
    untagged = session.xenapi.PIF.get_record(pifs[0])
    assert untagged["VLAN"] == "100" and untagged["physical"] is False
    vlan = untagged["VLAN_master_of"]
    assert session.xenapi.VLAN.get_tagged_PIF(vlan) == _pif(session, "eth1")
    assert session.xenapi.VLAN.get_tag(vlan) == "100"
    other = _net(session, "other")
    err = failure(session.xenapi.VLAN.create, _pif(session, "eth1"), "100", other)
    assert err == ["PIF_VLAN_EXISTS", "eth1"]
    assert failure(session.xenapi.VLAN.create, _pif(session, "eth1"), "4095", other) == [
        "VLAN_TAG_INVALID",
        "4095",
    ]
    assert failure(session.xenapi.VLAN.create, pifs[0], "7", other) == ["PIF_IS_VLAN", pifs[0]]
    err = failure(session.xenapi.VLAN.create, _pif(session, "eth0"), "5", net)
    assert err == ["NETWORK_ALREADY_CONNECTED", net, pifs[0]]
    session.xenapi.VLAN.destroy(vlan)
    assert session.xenapi.network.get_PIFs(net) == []


def test_bond_moves_management(session: Any) -> None:
    eth0, eth1 = _pif(session, "eth0"), _pif(session, "eth1")
    ip = session.xenapi.PIF.get_IP(eth0)
    net = _net(session, "bond network")
    assert failure(session.xenapi.Bond.create, net, [eth0], "", "active-backup", {}) == [
        "PIF_BOND_NEEDS_MORE_MEMBERS"
    ]
    bond = session.xenapi.Bond.create(net, [eth0, eth1], "", "active-backup", {})
    master = session.xenapi.Bond.get_master(bond)
    record = session.xenapi.PIF.get_record(master)
    assert record["device"] == "bond0" and record["management"] and record["IP"] == ip
    assert sorted(session.xenapi.Bond.get_slaves(bond)) == sorted([eth0, eth1])
    assert session.xenapi.PIF.get_bond_slave_of(eth0) == bond
    assert failure(session.xenapi.PIF.plug, eth1) == ["CANNOT_PLUG_BOND_SLAVE", eth1]
    session.xenapi.Bond.destroy(bond)
    assert session.xenapi.PIF.get_management(eth0) is True
    assert session.xenapi.PIF.get_IP(eth0) == ip


def test_tunnel_and_pif_configuration(session: Any) -> None:
    eth0, eth1 = _pif(session, "eth0"), _pif(session, "eth1")
    net = _net(session, "overlay")
    err = failure(session.xenapi.tunnel.create, eth1, net, "gre")
    assert err == ["TRANSPORT_PIF_NOT_CONFIGURED", eth1]
    tunnel = session.xenapi.tunnel.create(eth0, net, "vxlan")
    access = session.xenapi.tunnel.get_access_PIF(tunnel)
    assert session.xenapi.PIF.get_device(access).startswith("tunnel")
    session.xenapi.tunnel.destroy(tunnel)
    err = failure(session.xenapi.PIF.reconfigure_ip, eth1, "Static", "10.1.0.300", "", "", "")
    assert err == ["INVALID_IP_ADDRESS_SPECIFIED", "IP"]
    session.xenapi.PIF.reconfigure_ip(eth1, "Static", "10.1.0.5", "255.255.0.0", "", "")
    assert session.xenapi.PIF.get_IP(eth1) == "10.1.0.5"
    session.xenapi.PIF.reconfigure_ip(eth1, "DHCP", "", "", "", "")
    assert session.xenapi.PIF.get_IP(eth1)
    assert failure(session.xenapi.PIF.reconfigure_ip, eth0, "None", "", "", "", "") == [
        "PIF_IS_MANAGEMENT_INTERFACE",
        eth0,
    ]
    assert failure(session.xenapi.PIF.unplug, eth0) == ["PIF_IS_MANAGEMENT_INTERFACE", eth0]
    session.xenapi.PIF.unplug(eth1)
    assert session.xenapi.PIF.get_currently_attached(eth1) is False
    session.xenapi.PIF.plug(eth1)
    session.xenapi.PIF.forget(eth1)
    session.xenapi.PIF.scan(pool_master(session))
    assert _pif(session, "eth1") != eth1
