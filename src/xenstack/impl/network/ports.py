"""What the database says the switch must hold: bridges of networks, ports of VIFs and PIFs.

This is the toolstack's side of :mod:`xenstack.net`. It turns rows into the switch's specs
with XenServer's names and values (a network's bridge, a VLAN network's fake bridge on its
parent's, a VIF's port ``vif<domid>.<device>`` with the vif scripts' external ids, its MTU,
locking and QoS), and gives the hypervisor backend its port hooks (:class:`PortHooks`), which
a backend calls before it starts a domain and after it stops one.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Protocol, cast

from ...core.context import Context
from ...db.store import Database
from ...errors import ApiError
from ...idl.types import NULL_REF
from ...net import BridgeSpec, Locking, Switch, SwitchError, VifSpec
from ...net.model import vif_name

if TYPE_CHECKING:
    from ...core.context import Services

LIVE_STATES = ("Running", "Paused")


class Nic(Protocol):
    """What a backend says of a guest interface (``xenops.interface.NicSpec``'s shape)."""

    @property
    def device(self) -> str: ...

    @property
    def vif_id(self) -> str: ...


def switch(ctx: Context | Services) -> Switch:
    """The host's switch (made by the composition root)."""
    return cast(Switch, (ctx.toolstack if isinstance(ctx, Context) else ctx).switch)


def _services(ctx: Context | Services) -> Services:
    return ctx.toolstack if isinstance(ctx, Context) else ctx


def stable_mac(seed: str) -> str:
    """A locally administered unicast MAC derived from ``seed`` (a pinned bridge address)."""
    digest = hashlib.sha256(seed.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, 0x58, *digest[:4]))


def local_pif(db: Database, host: str, network: str) -> dict[str, Any] | None:
    for pif in db.get("network", network)["PIFs"]:
        row = db.get("PIF", pif)
        if row["host"] == host:
            return cast(dict[str, Any], row)
    return None


def bridge_specs(db: Database, host: str, network: str) -> list[BridgeSpec]:
    """The bridges ``network`` needs on ``host``, parents first: a fake VLAN bridge needs its
    parent's real bridge, named after the tagged PIF's network."""
    net = db.get("network", network)
    pif = local_pif(db, host, network)
    if pif is not None and pif["VLAN"] >= 0 and pif["VLAN_master_of"] != NULL_REF:
        vlan = db.get("VLAN", pif["VLAN_master_of"])
        tagged = db.get("PIF", vlan["tagged_PIF"])
        parents = bridge_specs(db, host, tagged["network"])
        return [
            *parents,
            BridgeSpec(net["bridge"], net["uuid"], parents[-1].name, vlan["tag"], net["MTU"]),
        ]
    hwaddr = pif["MAC"] if pif is not None and pif["MAC"] else stable_mac(net["uuid"])
    return [BridgeSpec(net["bridge"], net["uuid"], mtu=net["MTU"], hwaddr=hwaddr)]


def effective_locking(db: Database, vif: dict[str, Any]) -> Locking:
    mode = vif["locking_mode"]
    if mode == "network_default":
        mode = db.get("network", vif["network"])["default_locking_mode"]
    return Locking(mode, vif["MAC"], tuple(vif["ipv4_allowed"]), tuple(vif["ipv6_allowed"]))


def qos_kbps(vif: dict[str, Any]) -> int:
    if vif["qos_algorithm_type"] != "ratelimit":
        return 0
    try:
        return max(int(vif["qos_algorithm_params"].get("kbps", "0")), 0)
    except ValueError:
        return 0


def external_ids(db: Database, vif: dict[str, Any]) -> dict[str, str]:
    """The interface's external ids, as XenServer's vif script and ovs-xapi-sync set them."""
    vm = db.get("VM", vif["VM"])
    net = db.get("network", vif["network"])
    return {
        "attached-mac": vif["MAC"],
        "iface-id": vif["other_config"].get("nicira-iface-id", vif["uuid"]),
        "iface-status": "active",
        "xs-vif-uuid": vif["uuid"],
        "xs-vm-uuid": vm["uuid"],
        "xs-network-uuid": net["uuid"],
        "vm-id": vm["uuid"],
    }


def vif_spec(db: Database, vif_ref: str, domid: int) -> VifSpec:
    vif = db.get("VIF", vif_ref)
    net = db.get("network", vif["network"])
    return VifSpec(
        vif_name(domid, vif["device"]),
        net["bridge"],
        vif["MAC"],
        int(net["MTU"]),
        tuple(sorted(external_ids(db, vif).items())),
        effective_locking(db, vif),
        qos_kbps(vif),
    )


def find_vif(db: Database, vm: str, device: str) -> str:
    for vif in db.get("VM", vm)["VIFs"]:
        if db.exists("VIF", vif) and db.get("VIF", vif)["device"] == device:
            return str(vif)
    raise SwitchError(f"VM {vm} has no VIF {device}")


async def ensure_network(services: Services, network: str, host: str = "") -> None:
    db, sw = services.db, switch(services)
    for spec in bridge_specs(db, host or services.this_host, network):
        await sw.ensure_bridge(spec)


def running_domid(db: Database, vif: dict[str, Any]) -> int:
    """The domid of the VIF's VM when it runs (with the VIF attached), else -1."""
    vm = db.get("VM", vif["VM"])
    if vm["power_state"] in LIVE_STATES and vif["currently_attached"] and vm["domid"] >= 0:
        return int(vm["domid"])
    return -1


async def plug(services: Services, vif_ref: str, domid: int) -> None:
    db = services.db
    vif = db.get("VIF", vif_ref)
    await ensure_network(services, vif["network"])
    await switch(services).plug_vif(vif_spec(db, vif_ref, domid))


class PortHooks:
    """The hooks a backend calls around a domain's life (``xenops.interface.PortHooks``).

    ``nic`` needs only ``device`` and ``vif_id`` (the VIF's ref; "" to find it by device):
    everything else is read from the database, which the backend does not see.
    """

    def __init__(self, services: Services) -> None:
        self.services = services

    def _vif(self, vm_id: str, nic: Nic) -> str:
        db = self.services.db
        vif_id = getattr(nic, "vif_id", "")
        return vif_id if vif_id and db.exists("VIF", vif_id) else find_vif(db, vm_id, nic.device)

    async def vif_plug(self, vm_id: str, domid: int, nic: Nic, tap: str) -> None:
        await plug(self.services, self._vif(vm_id, nic), domid)

    async def vif_unplug(self, vm_id: str, domid: int, nic: Nic, tap: str) -> None:
        await switch(self.services).unplug_vif(tap or vif_name(domid, nic.device))


async def refresh(ctx: Context, vif_ref: str) -> None:
    """Apply a live VIF's locking to its port (after a change of mode or addresses)."""
    db = ctx.db
    vif = db.get("VIF", vif_ref)
    domid = running_domid(db, vif)
    if domid < 0:
        return
    spec = vif_spec(db, vif_ref, domid)
    try:
        await switch(ctx).set_locking(spec.name, spec.bridge, spec.locking)
    except SwitchError as exc:
        raise ApiError("INTERNAL_ERROR", [f"switch: {exc}"]) from None


async def move(ctx: Context, vif_ref: str) -> None:
    """Put a live VIF's port on its (new) network's bridge; the guest keeps its link."""
    db = ctx.db
    vif = db.get("VIF", vif_ref)
    domid = running_domid(db, vif)
    if domid < 0:
        return
    try:
        await ensure_network(ctx.toolstack, vif["network"])
        await switch(ctx).attach_vif(vif_spec(db, vif_ref, domid))
    except SwitchError as exc:
        raise ApiError("INTERNAL_ERROR", [f"switch: {exc}"]) from None


async def remove_bridge(ctx: Context, bridge: str) -> None:
    try:
        await switch(ctx).destroy_bridge(bridge)
    except SwitchError as exc:
        raise ApiError("INTERNAL_ERROR", [f"switch: {exc}"]) from None


async def sync_network(ctx: Context, network: str) -> None:
    """Make the network's bridges on this host (after a VLAN, bond or tunnel is made)."""
    try:
        await ensure_network(ctx.toolstack, network)
    except SwitchError as exc:
        raise ApiError("INTERNAL_ERROR", [f"switch: {exc}"]) from None
