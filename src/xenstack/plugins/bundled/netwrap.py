#!/usr/bin/env python3
"""xenstack's ``netwrap.py``: neutron's root helper in dom0 (os-xenapi's plug-in of that name).

``run_command`` takes ``cmd``, a JSON list (the command and its arguments), and optionally
``cmd_input`` (JSON text or null) for its stdin; it runs the command if its name is on the
allow-list below and answers its stdout. Anything else fails without running.
"""

import json

import dom0_utils
import XenAPIPlugin

ALLOWED_CMDS = (
    "ip",
    "ipset",
    "iptables-save",
    "iptables-restore",
    "ip6tables-save",
    "ip6tables-restore",
    "sysctl",
    "ovs-ofctl",
    "ovs-vsctl",
    "ovsdb-client",
    "conntrack",
)


def run_command(session, arg_dict):
    cmd = json.loads(arg_dict.get("cmd", "null"))
    if not isinstance(cmd, list) or not cmd or not all(isinstance(c, str) for c in cmd):
        raise dom0_utils.PluginError("cmd must be a JSON list of strings")
    if cmd[0] not in ALLOWED_CMDS:
        raise dom0_utils.PluginError(f"Dom0 execution of '{cmd[0]}' is not permitted")
    cmd_input = json.loads(arg_dict.get("cmd_input", "null"))
    return dom0_utils.run_command(cmd, cmd_input)


if __name__ == "__main__":
    XenAPIPlugin.dispatch({"run_command": run_command})
