"""Device, storage and network commands: vif, vbd, vdi, sr, pbd, network, pif, vlan, bond."""

from __future__ import annotations

from .context import Ctx
from .generic import parse_bytes
from .ops_common import pool_ref, print_uuid
from .output import CliError
from .records import enum_from_text
from .registry import command

NULL = "OpaqueRef:NULL"


#: The commands that take ``uuid=`` and call one message on that object:
#: command -> (class, message, help).
_ON_ONE_OBJECT: dict[str, tuple[str, str, str]] = {
    "vif-plug": ("VIF", "VIF.plug", "Attach a VIF to its running VM."),
    "vif-destroy": ("VIF", "VIF.destroy", "Destroy a VIF."),
    "vbd-destroy": ("VBD", "VBD.destroy", "Destroy a VBD."),
    "vbd-plug": ("VBD", "VBD.plug", "Attach a VBD to its running VM."),
    "vbd-eject": ("VBD", "VBD.eject", "Eject the media from a removable VBD."),
    "vdi-destroy": ("VDI", "VDI.destroy", "Destroy a VDI and its data."),
    "sr-scan": ("SR", "SR.scan", "Refresh the list of VDIs an SR holds."),
    "sr-forget": ("SR", "SR.forget", "Forget an SR (its data stays on the storage)."),
    "sr-destroy": ("SR", "SR.destroy", "Destroy an SR and all its data."),
    "pbd-plug": ("PBD", "PBD.plug", "Attach an SR to a host through this PBD."),
    "pbd-unplug": ("PBD", "PBD.unplug", "Detach an SR from a host through this PBD."),
    "pbd-destroy": ("PBD", "PBD.destroy", "Destroy a PBD."),
    "network-destroy": ("network", "network.destroy", "Destroy a network."),
    "pif-plug": ("PIF", "PIF.plug", "Bring a physical interface up."),
    "pif-unplug": ("PIF", "PIF.unplug", "Bring a physical interface down."),
    "pif-forget": ("PIF", "PIF.forget", "Forget a PIF."),
    "vlan-destroy": ("VLAN", "VLAN.destroy", "Destroy a VLAN and its PIF."),
    "bond-destroy": ("Bond", "Bond.destroy", "Destroy a bond."),
}


def _by_uuid(name: str, cls: str, method: str, help: str) -> None:
    """Register ``name``: it takes ``uuid=`` and calls ``method`` on that ``cls`` object."""

    @command(name, reqd="uuid", help=help)
    def run(ctx: Ctx) -> None:
        ctx.call(method, ctx.ref_by_uuid(cls, ctx.req("uuid")))


for _name, (_cls, _method, _help) in _ON_ONE_OBJECT.items():
    _by_uuid(_name, _cls, _method, _help)


def _optional_ref(ctx: Ctx, cls: str, key: str) -> str:
    """The ref of the ``cls`` object whose uuid parameter ``key`` names, or NULL if absent."""
    return ctx.ref_by_uuid(cls, ctx.req(key)) if ctx.get(key) else NULL


@command(
    "vif-create",
    reqd="device network-uuid vm-uuid",
    optn="mac",
    help="Create a virtual network interface; prints its uuid.",
)
def vif_create(ctx: Ctx) -> None:
    vm = ctx.ref_by_uuid("VM", ctx.req("vm-uuid"))
    network = ctx.ref_by_uuid("network", ctx.req("network-uuid"))
    mac = ctx.get("mac", "") or ""
    if mac == "random":
        import random

        octets = [0x02 | (random.randrange(256) & 0xFC)] + [random.randrange(256) for _ in range(5)]
        mac = ":".join(f"{o:02x}" for o in octets)
    vif = ctx.call("VIF.create", {
        "device": ctx.req("device"), "network": network, "VM": vm, "MAC": mac,
        "MTU": ctx.call("network.get_MTU", network), "other_config": {},
        "currently_attached": False, "qos_algorithm_type": "", "qos_algorithm_params": {},
        "locking_mode": "network_default", "ipv4_allowed": [], "ipv6_allowed": []})  # fmt: skip
    print_uuid(ctx, "VIF", vif)


@command("vif-unplug", reqd="uuid", optn="force", help="Detach a VIF from its running VM.")
def vif_unplug(ctx: Ctx) -> None:
    method = "VIF.unplug_force" if ctx.flag("force") else "VIF.unplug"
    ctx.call(method, ctx.ref_by_uuid("VIF", ctx.req("uuid")))


@command(
    "vbd-create",
    reqd="vm-uuid device",
    optn="vdi-uuid bootable type mode unpluggable",
    help="Create a virtual block device; prints its uuid.",
)
def vbd_create(ctx: Ctx) -> None:
    vm = ctx.ref_by_uuid("VM", ctx.req("vm-uuid"))
    vdi = _optional_ref(ctx, "VDI", "vdi-uuid")
    mode = (ctx.get("mode") or "rw").lower()
    if mode not in ("ro", "rw"):
        raise CliError(f'Unknown mode: {mode} (should be "ro" or "rw")')
    kinds = {"cd": "CD", "disk": "Disk", "floppy": "Floppy"}
    kind = kinds.get((ctx.get("type") or "disk").lower())
    if kind is None:
        raise CliError(f'Unknown type: {ctx.get("type")} (should be "cd", "disk" or "floppy")')
    if kind == "Disk" and vdi == NULL:
        raise CliError("Empty VBDs can only be made for type=CD")
    vbd = ctx.call("VBD.create", {
        "VM": vm, "VDI": vdi, "userdevice": ctx.req("device"), "device": "",
        "bootable": ctx.flag("bootable"), "mode": mode.upper(), "type": kind,
        "unpluggable": ctx.flag("unpluggable", True), "empty": vdi == NULL,
        "qos_algorithm_type": "", "qos_algorithm_params": {}, "other_config": {},
        "currently_attached": False})  # fmt: skip
    print_uuid(ctx, "VBD", vbd)


@command("vbd-unplug", reqd="uuid", optn="timeout force", help="Detach a VBD from its VM.")
def vbd_unplug(ctx: Ctx) -> None:
    method = "VBD.unplug_force" if ctx.flag("force") else "VBD.unplug"
    ctx.call(method, ctx.ref_by_uuid("VBD", ctx.req("uuid")))


@command("vbd-insert", reqd="uuid vdi-uuid", help="Insert a VDI into an empty removable VBD.")
def vbd_insert(ctx: Ctx) -> None:
    vbd = ctx.ref_by_uuid("VBD", ctx.req("uuid"))
    ctx.call("VBD.insert", vbd, ctx.ref_by_uuid("VDI", ctx.req("vdi-uuid")))


VDI_TYPES = {"system": "system", "user": "user", "suspend": "suspend", "crashdump": "crashdump",
             "ephemeral": "ephemeral", "ha statefile": "ha_statefile", "metadata": "metadata",
             "redo log": "redo_log", "rrd": "rrd", "pvs cache": "pvs_cache",
             "cbt metadata": "cbt_metadata"}  # fmt: skip


@command(
    "vdi-create",
    reqd="sr-uuid name-label virtual-size",
    optn="sm-config: sharable tags: type",
    help="Create a virtual disk; prints its uuid.",
)
def vdi_create(ctx: Ctx) -> None:
    sr = ctx.ref_by_uuid("SR", ctx.req("sr-uuid"))
    kind = (ctx.get("type") or "user").lower()
    if kind not in VDI_TYPES:
        raise CliError(f"Unknown VDI type: {ctx.get('type')}")
    vdi = ctx.call("VDI.create", {
        "name_label": ctx.req("name-label"), "name_description": "", "SR": sr,
        "virtual_size": parse_bytes("virtual-size", ctx.req("virtual-size")),
        "type": VDI_TYPES[kind], "sharable": ctx.flag("sharable"), "read_only": False,
        "xenstore_data": {}, "other_config": {}, "sm_config": ctx.map_param("sm-config"),
        "tags": list(ctx.map_param("tags"))})  # fmt: skip
    print_uuid(ctx, "VDI", vdi)


@command(
    "vdi-clone",
    reqd="uuid",
    optn="driver-params- new-name-label new-name-description",
    help="Clone a VDI; prints the new VDI's uuid.",
)
def vdi_clone(ctx: Ctx) -> None:
    vdi = ctx.ref_by_uuid("VDI", ctx.req("uuid"))
    new = ctx.call("VDI.clone", vdi, _driver_params(ctx))
    if ctx.get("new-name-label") is not None:
        ctx.call("VDI.set_name_label", new, ctx.req("new-name-label"))
    if ctx.get("new-name-description") is not None:
        ctx.call("VDI.set_name_description", new, ctx.req("new-name-description"))
    print_uuid(ctx, "VDI", new)


def _driver_params(ctx: Ctx) -> dict[str, str]:
    return {k[len("driver-params-") :]: v for k, v in ctx.params if k.startswith("driver-params-")}


@command(
    "vdi-snapshot",
    reqd="uuid",
    optn="driver-params-",
    help="Snapshot a VDI; prints the snapshot's uuid.",
)
def vdi_snapshot(ctx: Ctx) -> None:
    vdi = ctx.ref_by_uuid("VDI", ctx.req("uuid"))
    print_uuid(ctx, "VDI", ctx.call("VDI.snapshot", vdi, _driver_params(ctx)))


@command("vdi-resize", reqd="uuid disk-size", optn="online", help="Grow a VDI.")
def vdi_resize(ctx: Ctx) -> None:
    vdi = ctx.ref_by_uuid("VDI", ctx.req("uuid"))
    method = "VDI.resize_online" if ctx.flag("online") else "VDI.resize"
    ctx.call(method, vdi, parse_bytes("disk-size", ctx.req("disk-size")))


@command(
    "vdi-copy",
    reqd="uuid",
    optn="sr-uuid base-vdi-uuid into-vdi-uuid",
    help="Copy a VDI to an SR (or into an existing VDI); prints the copy's uuid.",
)
def vdi_copy(ctx: Ctx) -> None:
    vdi = ctx.ref_by_uuid("VDI", ctx.req("uuid"))
    sr = _optional_ref(ctx, "SR", "sr-uuid")
    base = _optional_ref(ctx, "VDI", "base-vdi-uuid")
    into = _optional_ref(ctx, "VDI", "into-vdi-uuid")
    if sr == NULL and into == NULL:
        raise CliError("Give sr-uuid or into-vdi-uuid")
    print_uuid(ctx, "VDI", ctx.call("VDI.copy", vdi, sr, base, into))


@command(
    "sr-create",
    reqd="name-label type",
    optn="name-description host-uuid device-config: shared physical-size content-type sm-config:",
    help="Create a storage repository; prints its uuid.",
)
def sr_create(ctx: Ctx) -> None:
    if ctx.get("host-uuid"):
        host = ctx.ref_by_uuid("host", ctx.req("host-uuid"))
    else:
        host = ctx.call("pool.get_master", pool_ref(ctx))
    size = parse_bytes("physical-size", ctx.get("physical-size") or "0")
    sr = ctx.call(
        "SR.create",
        host,
        ctx.map_param("device-config"),
        size,
        ctx.req("name-label"),
        ctx.get("name-description") or "",
        ctx.req("type"),
        ctx.get("content-type") or "",
        ctx.flag("shared"),
        ctx.map_param("sm-config"),
    )
    print_uuid(ctx, "SR", sr)


@command(
    "pbd-create",
    reqd="host-uuid sr-uuid",
    optn="device-config:",
    help="Create a PBD linking an SR to a host; prints its uuid.",
)
def pbd_create(ctx: Ctx) -> None:
    pbd = ctx.call("PBD.create", {
        "host": ctx.ref_by_uuid("host", ctx.req("host-uuid")),
        "SR": ctx.ref_by_uuid("SR", ctx.req("sr-uuid")),
        "device_config": ctx.map_param("device-config"), "other_config": {}})  # fmt: skip
    print_uuid(ctx, "PBD", pbd)


@command(
    "network-create",
    reqd="name-label",
    optn="name-description MTU bridge managed",
    help="Create a network; prints its uuid.",
)
def network_create(ctx: Ctx) -> None:
    try:
        mtu = int(ctx.get("MTU") or "1500")
    except ValueError:
        raise CliError("Failed to parse parameter 'MTU': expecting an integer") from None
    net = ctx.call("network.create", {
        "name_label": ctx.req("name-label"), "name_description": ctx.get("name-description") or "",
        "MTU": mtu, "other_config": {}, "bridge": ctx.get("bridge") or "",
        "managed": ctx.flag("managed", True), "tags": []})  # fmt: skip
    print_uuid(ctx, "network", net)


@command(
    "pif-reconfigure-ip",
    reqd="uuid mode",
    optn="IP netmask gateway DNS",
    help="Set the IP configuration of a PIF (mode dhcp, static or none).",
)
def pif_reconfigure_ip(ctx: Ctx) -> None:
    pif = ctx.ref_by_uuid("PIF", ctx.req("uuid"))
    mode = enum_from_text("ip_configuration_mode", ctx.req("mode").lower())
    if mode not in ("none", "dhcp", "static"):
        raise CliError(f"Unknown IP configuration mode: {mode}")
    ctx.call(
        "PIF.reconfigure_ip",
        pif,
        mode.capitalize() if mode != "dhcp" else "DHCP",
        ctx.get("IP") or "",
        ctx.get("netmask") or "",
        ctx.get("gateway") or "",
        ctx.get("DNS") or "",
    )


@command("pif-scan", reqd="host-uuid", help="Look for new physical interfaces on a host.")
def pif_scan(ctx: Ctx) -> None:
    ctx.call("PIF.scan", ctx.ref_by_uuid("host", ctx.req("host-uuid")))


@command(
    "pif-introduce",
    reqd="host-uuid device",
    optn="mac managed",
    help="Create a PIF for a physical interface; prints its uuid.",
)
def pif_introduce(ctx: Ctx) -> None:
    host = ctx.ref_by_uuid("host", ctx.req("host-uuid"))
    pif = ctx.call(
        "PIF.introduce", host, ctx.get("mac") or "", ctx.req("device"), ctx.flag("managed", True)
    )
    print_uuid(ctx, "PIF", pif)


@command(
    "vlan-create",
    reqd="pif-uuid vlan network-uuid",
    help="Create a VLAN on a PIF; prints the new VLAN's uuid.",
)
def vlan_create(ctx: Ctx) -> None:
    pif = ctx.ref_by_uuid("PIF", ctx.req("pif-uuid"))
    net = ctx.ref_by_uuid("network", ctx.req("network-uuid"))
    try:
        tag = int(ctx.req("vlan"))
    except ValueError:
        raise CliError("Failed to parse parameter 'vlan': expecting an integer") from None
    vlan = ctx.call("VLAN.create", pif, tag, net)
    print_uuid(ctx, "VLAN", vlan)


@command(
    "bond-create",
    reqd="network-uuid pif-uuids",
    optn="mac mode properties:",
    help="Bond physical interfaces together; prints the bond's uuid.",
)
def bond_create(ctx: Ctx) -> None:
    net = ctx.ref_by_uuid("network", ctx.req("network-uuid"))
    pifs = [ctx.ref_by_uuid("PIF", u) for u in ctx.req("pif-uuids").split(",") if u]
    mode = enum_from_text("bond_mode", ctx.get("mode") or "balance-slb")
    bond = ctx.call(
        "Bond.create", net, pifs, ctx.get("mac") or "", mode, ctx.map_param("properties")
    )
    print_uuid(ctx, "Bond", bond)
