"""VIF drivers: how a neutron port becomes a XenAPI VIF.

- ``ovs``: the VIF joins the network whose bridge is ``[xenserver] ovs_integration_bridge``
  and carries the neutron port id in ``other_config:nicira-iface-id`` (and
  ``neutron-port-id``); the host's Open vSwitch backend puts it on the port as
  ``external_ids:iface-id``, which is what neutron's OVS agent binds and tags.
- ``bridge``: the VIF joins the network of the port's bridge (``network.bridge``); for a
  tagged network (``vlan``) that network is made, with ``VLAN.create`` on the PIF of the
  physical network, when it does not exist yet.
"""

from __future__ import annotations

from typing import Any

from nova import exception
from oslo_config import cfg

from . import vm_utils
from .session import XenAPISession

CONF = cfg.CONF
MTU_DEFAULT = "1500"


def _find_network(session: XenAPISession, bridge: str) -> str | None:
    for ref in session.call("network.get_all"):
        rec = session.call("network.get_record", ref)
        if bridge in (rec["bridge"], rec["name_label"]):
            return str(ref)
    return None


class VIFDriver:
    def __init__(self, session: XenAPISession, host: str) -> None:
        self.session = session
        self.host = host

    def network_for(self, vif: Any) -> str:
        raise NotImplementedError

    def other_config(self, vif: Any) -> dict[str, str]:
        return {"nova_vif_id": str(vif["id"])}

    def plug(self, instance: Any, vif: Any, vm: str, device: int | str) -> str:
        """A VIF for ``vif`` on ``vm`` (plugged when the VM runs)."""
        network = self.network_for(vif)
        mtu = str(vif["network"].get_meta("mtu") or MTU_DEFAULT) if vif.get("network") else "1500"
        record = {
            "device": str(device),
            "network": network,
            "VM": vm,
            "MAC": vif["address"],
            "MTU": mtu,
            "other_config": self.other_config(vif),
            "qos_algorithm_type": "",
            "qos_algorithm_params": {},
        }
        ref = str(self.session.call("VIF.create", record))
        if vm_utils.power(self.session, vm) == "Running":
            try:
                self.session.call("VIF.plug", ref)
            except BaseException:
                self.session.call("VIF.destroy", ref)
                raise
        return ref

    def unplug(self, instance: Any, vif: Any, vm: str) -> None:
        for ref in self.session.call("VM.get_VIFs", vm):
            rec = self.session.call("VIF.get_record", ref)
            if rec["MAC"].lower() != str(vif["address"]).lower():
                continue
            if rec["currently_attached"]:
                with vm_utils.ignore("DEVICE_ALREADY_DETACHED"):
                    self.session.call("VIF.unplug", ref)
            self.session.call("VIF.destroy", ref)


class OVSVIFDriver(VIFDriver):
    def network_for(self, vif: Any) -> str:
        bridge = CONF.xenserver.ovs_integration_bridge
        net = _find_network(self.session, bridge)
        if net is None:
            record = {
                "name_label": bridge,
                "name_description": "OpenStack integration bridge (neutron)",
                "bridge": bridge,
                "MTU": MTU_DEFAULT,
                "other_config": {"nova_integration_bridge": "true"},
                "tags": [],
            }
            net = str(self.session.call("network.create", record))
        return net

    def other_config(self, vif: Any) -> dict[str, str]:
        port = str(vif["id"])
        return {**super().other_config(vif), "nicira-iface-id": port, "neutron-port-id": port}


class BridgeVIFDriver(VIFDriver):
    def network_for(self, vif: Any) -> str:
        network = vif["network"]
        bridge = network["bridge"]
        net = _find_network(self.session, bridge) if bridge else None
        if net is not None:
            return net
        vlan = network.get_meta("vlan")
        if not vlan:
            raise exception.NetworkNotFoundForBridge(bridge=bridge)
        return self._vlan_network(bridge, int(vlan), network.get_meta("physical_network"))

    def _vlan_network(self, bridge: str, vlan: int, physnet: str | None) -> str:
        pif = self._physical_pif(physnet)
        record = {
            "name_label": bridge,
            "name_description": f"VLAN {vlan} (nova)",
            "bridge": bridge,
            "MTU": MTU_DEFAULT,
            "other_config": {"nova_vlan": str(vlan)},
            "tags": [],
        }
        net = str(self.session.call("network.create", record))
        try:
            self.session.call("VLAN.create", pif, str(vlan), net)
        except BaseException:
            self.session.call("network.destroy", net)
            raise
        return net

    def _physical_pif(self, physnet: str | None) -> str:
        """The untagged PIF of this host on the physical network: the network named (or
        bridged) ``physnet`` when given, else the management PIF."""
        for ref in self.session.call("host.get_PIFs", self.host):
            rec = self.session.call("PIF.get_record", ref)
            if rec["VLAN"] not in ("-1", -1):
                continue
            if physnet:
                net = self.session.call("network.get_record", rec["network"])
                if physnet in (net["bridge"], net["name_label"], rec["device"]):
                    return str(ref)
            elif rec["management"]:
                return str(ref)
        raise exception.NovaException(f"no PIF for physical network {physnet or 'management'}")


def load(name: str, session: XenAPISession, host: str) -> VIFDriver:
    return {"ovs": OVSVIFDriver, "bridge": BridgeVIFDriver}[name](session, host)
