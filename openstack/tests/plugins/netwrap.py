#!/usr/bin/env python3
"""A dom0 ``netwrap.py`` plug-in for the tests: ``run_command(cmd, cmd_input)`` runs one
allowed network command (JSON argv and JSON stdin) and answers JSON ``{returncode, out,
err}``, as neutron's XenServer root helper expects; anything else is refused."""

import json
import shutil
import subprocess

import XenAPIPlugin

ALLOWED = {
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
}


def run_command(session, args):
    cmd = json.loads(args.get("cmd", "[]"))
    stdin = json.loads(args.get("cmd_input", "null"))
    if not cmd or cmd[0] not in ALLOWED:
        raise XenAPIPlugin.Failure(
            "XENAPI_PLUGIN_FAILURE",
            [
                "run_command",
                "PluginError",
                f"Dom0 execution of '{cmd[0] if cmd else ''}' is not permitted",
            ],
        )
    if shutil.which(cmd[0]) is None:
        raise XenAPIPlugin.Failure(
            "XENAPI_PLUGIN_FAILURE", ["run_command", "PluginError", "Executable not found"]
        )
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60)
    return json.dumps({"returncode": proc.returncode, "out": proc.stdout, "err": proc.stderr})


if __name__ == "__main__":
    XenAPIPlugin.dispatch({"run_command": run_command})
