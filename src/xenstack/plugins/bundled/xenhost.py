#!/usr/bin/env python3
"""xenstack's ``xenhost.py``: the host facts and dom0 network setup nova and neutron ask for.

JSON functions, as os-xenapi's plug-in of that name (arguments in the plain dict):

- ``host_data``: the host's record from ``xe host-param-list`` (this host:
  ``INSTALLATION_UUID``), cut to what nova reads (``host_name-label``, ``host_hostname``,
  ``host_uuid``, ``enabled``, ``host_memory`` {total, overhead, free, free-computed},
  ``host_ip_address``, ``host_capabilities``, ``host_other-config``, ``host_cpu_info``).
- ``host_uptime``: ``{"uptime": <uptime's output>}``.
- ``network_config``: ``cmd`` (JSON: one of ``ALLOWED_NETWORK_CMDS``) with ``args`` (JSON
  dict), run with ``ovs-vsctl`` / ``ip`` against the host's switch (the environment the
  toolstack gives plug-ins names it, e.g. ``OVS_RUNDIR``).
- ``get_pci_device_details``: ``lspci -vmmnk``'s text; ``get_pci_type``: ``type-PF``,
  ``type-VF`` or ``type-PCI`` of ``pci_device`` (a ``0000:00:00.0`` address).
- ``set_host_enabled``: ``enabled`` ``"true"``/``"false"`` through ``xe host-enable`` /
  ``host-disable``; answers ``{"status": "enabled"|"disabled"}`` as the host then is.
- ``get_config`` / ``set_config``: ``key`` (and ``value``, JSON) in the plug-in's own JSON
  configuration file (``$XENSTACK_STATE_DIR/xenhost.conf``; XenServer's
  ``/usr/etc/xenhost.conf``); a ``value`` of null removes the key.
"""

import json
import os
import re

import dom0_utils
import XenAPIPlugin

_FIELD = re.compile(r"^\s*([^( ]+)\s*\(\s*[A-Z]+\s*\)\s*:\s?(.*)$")


def _param_list(text):
    out = {}
    for line in text.splitlines():
        match = _FIELD.match(line)
        if match:
            out[match.group(1)] = match.group(2)
    return out


def _map(text):
    out = {}
    for part in text.split("; "):
        key, sep, value = part.partition(": ")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _int(text):
    try:
        return int(text)
    except ValueError:
        return 0


@dom0_utils.jsonify
def host_data(session, arg_dict):
    uuid = os.environ.get("INSTALLATION_UUID", "")
    params = _param_list(dom0_utils.run_command(["xe", "host-param-list", f"uuid={uuid}"]))
    return {
        "host_name-label": params.get("name-label", ""),
        "host_hostname": params.get("hostname", ""),
        "host_uuid": params.get("uuid", uuid),
        "enabled": params.get("enabled", ""),
        "host_memory": {
            "total": _int(params.get("memory-total", "0")),
            "overhead": _int(params.get("memory-overhead", "0")),
            "free": _int(params.get("memory-free", "0")),
            "free-computed": _int(params.get("memory-free-computed", "0")),
        },
        "host_ip_address": params.get("address", ""),
        "host_capabilities": [c for c in params.get("capabilities", "").split("; ") if c],
        "host_other-config": _map(params.get("other-config", "")),
        "host_cpu_info": _map(params.get("cpu_info", "")),
    }


@dom0_utils.jsonify
def host_uptime(session, arg_dict):
    return {"uptime": dom0_utils.run_command(["uptime"])}


def _vsctl(*args):
    return dom0_utils.run_command(["ovs-vsctl", "--timeout=30", *args])


def ovs_create_port(args):
    bridge, port = args["bridge"], args["port"]
    _vsctl("--", "--if-exists", "del-port", port, "--", "add-port", bridge, port,
           "--", "set", "interface", port, "type=internal")  # fmt: skip
    return ""


def ovs_add_patch_port(args):
    bridge, port, peer = args["bridge"], args["port"], args["peer_port"]
    _vsctl("--", "--if-exists", "del-port", port, "--", "add-port", bridge, port,
           "--", "set", "interface", port, "type=patch", f"options:peer={peer}")  # fmt: skip
    return ""


def ovs_del_port(args):
    _vsctl("--", "--if-exists", "del-port", args["bridge"], args["port"])
    return ""


def ovs_del_br(args):
    _vsctl("--", "--if-exists", "del-br", args["bridge_name"])
    return ""


def ovs_set_if_external_id(args):
    iface, key, value = args["interface"], args["external_id"], args["value"]
    _vsctl("set", "Interface", iface, f"external-ids:{key}={value}")
    return ""


def ip_link_get_dev(args):
    return dom0_utils.run_command(["ip", "link", "show", args["device_name"]], ok=(0, 1))


def ip_link_del_dev(args):
    return dom0_utils.run_command(["ip", "link", "delete", args["device_name"]])


def ip_link_add_veth_pair(args):
    cmd = ["ip", "link", "add", args["dev1_name"], "type", "veth", "peer", "name"]
    return dom0_utils.run_command([*cmd, args["dev2_name"]])


def ip_link_set_dev(args):
    return dom0_utils.run_command(["ip", "link", "set", args["device_name"], args["option"]])


def ip_link_set_promisc(args):
    cmd = ["ip", "link", "set", args["device_name"], "promisc", args["option"]]
    return dom0_utils.run_command(cmd)


ALLOWED_NETWORK_CMDS = {
    f.__name__: f
    for f in (
        ovs_create_port,
        ovs_add_patch_port,
        ovs_del_port,
        ovs_del_br,
        ovs_set_if_external_id,
        ip_link_get_dev,
        ip_link_del_dev,
        ip_link_add_veth_pair,
        ip_link_set_dev,
        ip_link_set_promisc,
    )
}


@dom0_utils.jsonify
def network_config(session, arg_dict):
    cmd = json.loads(arg_dict.get("cmd", "null"))
    args = json.loads(arg_dict.get("args", "{}"))
    if cmd not in ALLOWED_NETWORK_CMDS or not isinstance(args, dict):
        raise dom0_utils.PluginError(f"Dom0 execution of '{cmd}' is not permitted")
    return ALLOWED_NETWORK_CMDS[cmd](args)


@dom0_utils.jsonify
def get_pci_device_details(session, arg_dict):
    return dom0_utils.run_command(["lspci", "-vmmnk"])


@dom0_utils.jsonify
def get_pci_type(session, arg_dict):
    address = arg_dict["pci_device"]
    if not re.fullmatch(r"[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]", address):
        raise dom0_utils.PluginError(f"bad PCI address: {address!r}")
    base = f"/sys/bus/pci/devices/{address}"
    if not os.path.isdir(base):
        raise dom0_utils.PluginError(f"no PCI device {address}")
    if os.path.exists(f"{base}/physfn"):
        return "type-VF"
    if os.path.exists(f"{base}/virtfn0"):
        return "type-PF"
    return "type-PCI"


def _this_host():
    return f"uuid={os.environ.get('INSTALLATION_UUID', '')}"


@dom0_utils.jsonify
def set_host_enabled(session, arg_dict):
    enabled = arg_dict.get("enabled")
    if enabled not in ("true", "false"):
        raise dom0_utils.PluginError("enabled must be 'true' or 'false'")
    dom0_utils.run_command(["xe", "host-enable" if enabled == "true" else "host-disable",
                            _this_host()])  # fmt: skip
    now = dom0_utils.run_command(["xe", "host-param-get", _this_host(), "param-name=enabled"])
    return {"status": "enabled" if now.strip() == "true" else "disabled"}


def _config_path():
    state = os.environ.get("XENSTACK_STATE_DIR", "")
    return os.path.join(state, "xenhost.conf") if state else "/usr/etc/xenhost.conf"


def _config():
    try:
        with open(_config_path()) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


@dom0_utils.jsonify
def get_config(session, arg_dict):
    return _config().get(arg_dict["key"])


@dom0_utils.jsonify
def set_config(session, arg_dict):
    config = _config()
    value = json.loads(arg_dict.get("value", "null"))
    if value is None:
        config.pop(arg_dict["key"], None)
    else:
        config[arg_dict["key"]] = value
    tmp = _config_path() + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(config, fh)
    os.replace(tmp, _config_path())
    return None


if __name__ == "__main__":
    XenAPIPlugin.dispatch(
        {
            "set_host_enabled": set_host_enabled,
            "get_config": get_config,
            "set_config": set_config,
            "host_data": host_data,
            "host_uptime": host_uptime,
            "network_config": network_config,
            "get_pci_device_details": get_pci_device_details,
            "get_pci_type": get_pci_type,
        }
    )
