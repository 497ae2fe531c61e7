#!/usr/bin/env python3
"""xenstack's ``xenhost.py``: the host facts and dom0 network setup nova and neutron ask for.

As os-xenapi's plug-in of that name: four functions take pickled params
(``call_plugin_serialized``), the others a plain dict and answer JSON.

Pickled: ``network_config(args)`` with ``args`` ``{"cmd": one of ALLOWED_NETWORK_CMDS, "args":
{...}}`` (os-xenapi's command names and argument keys, ``extneral_id`` spelt as its client
spells it; brctl's done with ip(8)), answering the command's output; ``get_pci_device_details()``
(``lspci -vmmnk``); ``get_pci_type(pci_device)`` (``type-PF``/``type-VF``/``type-PCI``);
``query_gc(sr_uuid, vdi_uuid)`` (whether the SR's GC holds its ``gc_active`` lock).

Plain: ``host_data`` (the host's record from ``xe host-param-list``, cut to what nova reads),
``host_uptime`` (``{"uptime": ...}``), ``set_host_enabled`` (``enabled`` "true"/"false";
``{"status": ...}``), ``host_reboot``/``host_shutdown``/``host_start`` (``host_uuid``: the
host disabled, its running VMs shut down, then ``xe host-reboot``/``-shutdown``/``-power-on``;
``{"power_action": ...}``), ``iptables_config`` (``cmd_args`` a JSON list starting with
iptables-save/-restore or ip6tables', ``process_input``; ``{"out": ..., "err": ""}``),
``get_config``/``set_config`` (``key``, ``value`` JSON, in ``$XENSTACK_STATE_DIR/xenhost.conf``;
XenServer's ``/usr/etc/xenhost.conf``; null removes the key), ``host_join`` (called on the
master: ``url``, ``user``, ``password`` of the joining host, ``compute_uuid``, ``master_addr``,
``master_user``, ``master_pass``, ``force`` "true"/"false": the compute VM is shut down on the
joiner, which then joins (or join_forces) this pool; the VM is started again whatever
happened, through the joiner's session while it answers, else with this master's ``xe
vm-start``, tried until it works; ``null``).

Commands that touch dom0's network (``ip``, iptables) run in the toolstack's network namespace
when it has one (``XENSTACK_NETNS``); ``ovs-vsctl`` reaches the host's switch through the
environment the toolstack gives plug-ins (``OVS_RUNDIR``).
"""

import json
import os
import re
import time

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


def _ip(*args):
    return dom0_utils.run_command(dom0_utils.in_dom0_net(["ip", *args]))


def _need(args, key):
    if key not in args:
        raise dom0_utils.PluginError(f"Argument {key} is required.")
    return args[key]


def ovs_add_patch_port(args):
    bridge, port = _need(args, "bridge_name"), _need(args, "port_name")
    peer = _need(args, "peer_port_name")
    return _vsctl("--", "--if-exists", "del-port", port, "--", "add-port", bridge, port,
                  "--", "set", "interface", port, "type=patch", f"options:peer={peer}")  # fmt: skip


def ovs_add_port(args):
    bridge, port = _need(args, "bridge_name"), _need(args, "port_name")
    return _vsctl("--", "--if-exists", "del-port", port, "--", "add-port", bridge, port)


def ovs_create_port(args):
    bridge, port, iface_id = _need(args, "bridge"), _need(args, "port"), _need(args, "iface-id")
    mac, status = _need(args, "mac"), _need(args, "status")
    return _vsctl("--", "--if-exists", "del-port", port, "--", "add-port", bridge, port,
                  "--", "set", "Interface", port, f"external_ids:iface-id={iface_id}",
                  f"external_ids:iface-status={status}", f"external_ids:attached-mac={mac}",
                  f"external_ids:xs-vif-uuid={iface_id}")  # fmt: skip


def ovs_del_port(args):
    return _vsctl("--", "--if-exists", "del-port", _need(args, "bridge_name"),
                  _need(args, "port_name"))  # fmt: skip


def ovs_del_br(args):
    return _vsctl("--", "--if-exists", "del-br", _need(args, "bridge_name"))


def ovs_set_if_external_id(args):
    # "extneral_id": the key os-xenapi's client sends, spelt as it spells it
    iface, key, value = _need(args, "interface"), _need(args, "extneral_id"), _need(args, "value")
    return _vsctl("set", "Interface", iface, f"external-ids:{key}={value}")


def ip_link_get_dev(args):
    return _ip("link", "show", _need(args, "device_name"))


def ip_link_del_dev(args):
    return _ip("link", "delete", _need(args, "device_name"))


def ip_link_add_veth_pair(args):
    return _ip("link", "add", _need(args, "dev1_name"), "type", "veth", "peer", "name",
               _need(args, "dev2_name"))  # fmt: skip


def ip_link_set_dev(args):
    return _ip("link", "set", _need(args, "device_name"), _need(args, "option"))


def ip_link_set_promisc(args):
    return _ip("link", "set", _need(args, "device_name"), "promisc", _need(args, "option"))


# brctl's commands, done with ip(8) (dom0 here has no bridge-utils): the same bridges
def brctl_add_br(args):
    return _ip("link", "add", _need(args, "bridge_name"), "type", "bridge")


def brctl_del_br(args):
    return _ip("link", "delete", _need(args, "bridge_name"), "type", "bridge")


def brctl_set_fd(args):
    centis = str(int(float(_need(args, "fd")) * 100))  # brctl takes seconds, ip centiseconds
    return _ip("link", "set", _need(args, "bridge_name"), "type", "bridge", "forward_delay",
               centis)  # fmt: skip


def brctl_set_stp(args):
    state = "1" if _need(args, "option") in ("on", "yes", "1") else "0"
    return _ip("link", "set", _need(args, "bridge_name"), "type", "bridge", "stp_state", state)


def brctl_add_if(args):
    return _ip("link", "set", _need(args, "interface_name"), "master", _need(args, "bridge_name"))


def brctl_del_if(args):
    _need(args, "bridge_name")
    return _ip("link", "set", _need(args, "interface_name"), "nomaster")


ALLOWED_NETWORK_CMDS = {
    f.__name__: f
    for f in (
        ovs_add_patch_port,
        ovs_add_port,
        ovs_create_port,
        ovs_del_port,
        ovs_del_br,
        ovs_set_if_external_id,
        ip_link_add_veth_pair,
        ip_link_del_dev,
        ip_link_get_dev,
        ip_link_set_dev,
        ip_link_set_promisc,
        brctl_add_br,
        brctl_add_if,
        brctl_del_br,
        brctl_del_if,
        brctl_set_fd,
        brctl_set_stp,
    )
}


def network_config(session, args):
    cmd = _need(args, "cmd")
    if not isinstance(cmd, str):
        raise dom0_utils.PluginError(f"invalid command '{cmd}'")
    if cmd not in ALLOWED_NETWORK_CMDS:
        raise dom0_utils.PluginError(f"Dom0 execution of '{cmd}' is not permitted")
    cmd_args = _need(args, "args")
    if not isinstance(cmd_args, dict):
        raise dom0_utils.PluginError("args must be a dict")
    return ALLOWED_NETWORK_CMDS[cmd](cmd_args)


def query_gc(session, sr_uuid, vdi_uuid):
    """Whether the GC of SR ``sr_uuid`` runs now (SM's ``cleanup.py -q -u SR``: its
    ``gc_active`` lock, here under ``$XENSTACK_STATE_DIR/run/sm``)."""
    import fcntl

    state = os.environ.get("XENSTACK_STATE_DIR", "")
    lock = os.path.join(state, "run", "sm", sr_uuid, "gc_active") if state else ""
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def get_pci_device_details(session):
    return dom0_utils.run_command(["lspci", "-vmmnk"])


def get_pci_type(session, pci_device):
    address = pci_device if pci_device.count(":") != 1 else f"0000:{pci_device}"
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


def _power_action(action, arg_dict):
    """os-xenapi's sequence: disable the host, shut its running VMs down, then the action."""
    host = f"uuid={arg_dict['host_uuid']}"
    dom0_utils.run_command(["xe", "host-disable", host])
    running = dom0_utils.run_command(["xe", "vm-list", f"resident-on={arg_dict['host_uuid']}",
                                      "is-control-domain=false", "power-state=running",
                                      "--minimal"]).strip()  # fmt: skip
    for vm in filter(None, running.split(",")):
        dom0_utils.run_command(["xe", "vm-shutdown", f"uuid={vm}"])
    command = {"reboot": "host-reboot", "startup": "host-power-on", "shutdown": "host-shutdown"}
    dom0_utils.run_command(["xe", command[action], host])
    return {"power_action": action}


@dom0_utils.jsonify
def host_reboot(session, arg_dict):
    return _power_action("reboot", arg_dict)


@dom0_utils.jsonify
def host_shutdown(session, arg_dict):
    return _power_action("shutdown", arg_dict)


@dom0_utils.jsonify
def host_start(session, arg_dict):
    return _power_action("startup", arg_dict)


IPTABLES = ("iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore")


def iptables_config(session, arg_dict):
    """``cmd_args`` (JSON list): one of iptables(-save|-restore) and ip6tables', with
    ``process_input`` for a restore; run in dom0's network (its namespace, when the toolstack
    has one). Answers JSON ``{"out": ..., "err": ""}``."""
    if "cmd_args" not in arg_dict:
        raise dom0_utils.PluginError("Argument cmd_args is required.")
    cmd = [str(part) for part in json.loads(arg_dict["cmd_args"])]
    if not cmd or cmd[0] not in IPTABLES:
        raise dom0_utils.PluginError("Invalid iptables command")
    out = dom0_utils.run_command(dom0_utils.in_dom0_net(cmd), arg_dict.get("process_input"))
    return json.dumps({"out": out, "err": ""})


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


RESUME_TRIES, RESUME_PAUSE = 23, 10.0  # os-xenapi's: about four minutes for the joiner


def _resume_compute(joiner, compute_ref, compute_uuid):
    """Start the compute VM again. A joiner that did not join still answers its session;
    one that did answers HOST_IS_SLAVE, and the VM is this pool's: start it from here."""
    import XenAPI

    try:
        joiner.xenapi.VM.start(compute_ref, False, True)
        return
    except XenAPI.Failure:
        pass
    for attempt in range(RESUME_TRIES):
        try:
            dom0_utils.run_command(["xe", "vm-start", f"uuid={compute_uuid}"])
            return
        except dom0_utils.PluginError:
            if attempt + 1 < RESUME_TRIES:
                time.sleep(RESUME_PAUSE)
    raise dom0_utils.PluginError(
        f"the compute VM {compute_uuid} could not be started again after the join"
    )


@dom0_utils.jsonify
def host_join(session, arg_dict):
    import XenAPI

    joiner = XenAPI.Session(arg_dict.get("url"))
    joiner.login_with_password(arg_dict.get("user"), arg_dict.get("password"))
    compute_uuid = arg_dict.get("compute_uuid")
    compute = joiner.xenapi.VM.get_by_uuid(compute_uuid)
    joiner.xenapi.VM.clean_shutdown(compute)
    forced = arg_dict.get("force", "false") != "false"
    join = joiner.xenapi.pool.join_force if forced else joiner.xenapi.pool.join
    try:
        join(arg_dict.get("master_addr"), arg_dict.get("master_user"), arg_dict.get("master_pass"))
    finally:
        _resume_compute(joiner, compute, compute_uuid)
    return None


SERIALIZED = (query_gc, get_pci_device_details, get_pci_type, network_config)

if __name__ == "__main__":
    import sys
    import xmlrpc.client

    # as os-xenapi's: these four take pickled params, the others a plain dict
    if xmlrpc.client.loads(sys.argv[1])[1] in [f.__name__ for f in SERIALIZED]:
        dom0_utils.register_plugin_calls(*SERIALIZED)
    else:
        XenAPIPlugin.dispatch(
            {
                "set_host_enabled": set_host_enabled,
                "host_shutdown": host_shutdown,
                "host_reboot": host_reboot,
                "host_start": host_start,
                "get_config": get_config,
                "set_config": set_config,
                "iptables_config": iptables_config,
                "host_data": host_data,
                "host_uptime": host_uptime,
                "host_join": host_join,
            }
        )
