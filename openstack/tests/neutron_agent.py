"""neutron's ``neutron-openvswitch-agent`` (neutron's own entry point, unmodified) with only
its two server-side RPC APIs replaced, as /work/shared/reference/openstack.md §4 measured
it: ``OVSPluginApi`` answers the one port of ``$XO_PORT`` (JSON: ``id``, ``mac``,
``network_id``, ``segmentation_id``) as a VLAN port of ``physnet1``, and the report-state API
says the server is alive. Everything else (OVSDB over TCP through ovsdbapp, OpenFlow through
its os-ken controller) is the agent's own. Usage: ``neutron_agent.py CONFIG_FILE``; prints a
JSON line per ``update_device_list`` call.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any
from unittest import mock

PORT = json.loads(os.environ["XO_PORT"])


def details(device: str) -> dict[str, Any]:
    if device != PORT["id"]:
        return {"device": device}  # not a port of the server's: the agent skips it
    return {
        "device": device,
        "port_id": device,
        "network_id": PORT["network_id"],
        "network_type": "vlan",
        "physical_network": "physnet1",
        "segmentation_id": PORT["segmentation_id"],
        "admin_state_up": True,
        "fixed_ips": [],
        "device_owner": "compute:nova",
        "mac_address": PORT["mac"],
        "port_security_enabled": False,
        "qos_policy_id": None,
        "network_qos_policy_id": None,
        "profile": {},
        "propagate_uplink_status": False,
        "mtu": 1500,
    }


class PluginApi:
    """The server's answers for the agent's plug-in RPCs."""

    def __init__(self, topic: str) -> None:
        self.remote_resource_cache = mock.MagicMock()

    def register_legacy_notification_callbacks(self, agent: Any) -> None:
        pass

    def get_devices_details_list_and_failed_devices(
        self, context: Any, devices: list[str], agent_id: str, *_: Any, **__: Any
    ) -> dict[str, Any]:
        return {"devices": [details(d) for d in devices], "failed_devices": []}

    def update_device_list(
        self, context: Any, up: list[str], down: list[str], agent_id: str, *_: Any, **__: Any
    ) -> dict[str, Any]:
        print(json.dumps({"update_device_list": {"up": up, "down": down}}), flush=True)
        return {"devices_up": up, "failed_devices_up": [], "devices_down": down,
                "failed_devices_down": []}  # fmt: skip

    def __getattr__(self, name: str) -> Any:
        return mock.MagicMock(name=name)


class StateApi:
    def __init__(self, topic: str) -> None:
        pass

    def has_alive_neutron_server(self, context: Any, **_: Any) -> bool:
        return True

    def report_state(self, context: Any, state: Any, use_call: bool = False) -> str:
        return "alive"


def main() -> None:
    from neutron.agent import rpc as agent_rpc
    from neutron.cmd.agents import ovs_neutron_agent as command
    from neutron.plugins.ml2.drivers.openvswitch.agent import ovs_neutron_agent as ovs_agent

    ovs_agent.OVSPluginApi = PluginApi  # type: ignore[misc,assignment]
    agent_rpc.PluginReportStateAPI = StateApi  # type: ignore[misc,assignment]
    sys.argv = ["neutron-openvswitch-agent", "--config-file", sys.argv[1]]
    command.main()


if __name__ == "__main__":
    main()
