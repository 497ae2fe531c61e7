"""The switch interface: what impl/network asks of a host's virtual switch.

Every call is a coroutine that does all of its work or raises :class:`SwitchError` having
changed nothing it can undo. Names are the kernel's (bridges, ports, interfaces); external ids
are what XenServer writes, so that ``ovs-vsctl`` and neutron's agent see the same thing.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence

from .model import BridgeSpec, BridgeState, Locking, PortState, TraceResult, VifSpec


class Switch(abc.ABC):
    """One host's switch. ``kind`` is ``simulated`` or ``openvswitch``."""

    kind: str = ""
    # the network namespace the switch and its ports live in ("" for the host's own)
    netns: str = ""

    async def start(self) -> None:  # noqa: B027 (a switch may need no start)
        """Connect (and start the daemons a private switch needs)."""

    async def stop(self) -> None:  # noqa: B027
        """Disconnect (and stop what :meth:`start` started)."""

    # state --------------------------------------------------------------------------------

    @abc.abstractmethod
    async def bridges(self) -> dict[str, BridgeState]:
        """Every bridge, real and fake, by name."""

    @abc.abstractmethod
    async def ports(self) -> dict[str, PortState]:
        """Every port that is not a bridge's own, by name."""

    async def state(self) -> tuple[dict[str, BridgeState], dict[str, PortState]]:
        """:meth:`bridges` and :meth:`ports` read at once (without the ports' counters)."""
        return await self.bridges(), await self.ports()

    # bridges ------------------------------------------------------------------------------

    @abc.abstractmethod
    async def ensure_bridge(self, spec: BridgeSpec) -> None:
        """Create the bridge, or bring an existing one to ``spec`` (MTU, ids, hwaddr, tag)."""

    @abc.abstractmethod
    async def destroy_bridge(self, name: str) -> None:
        """Remove a bridge (a real one takes its fake bridges and ports with it)."""

    # ports --------------------------------------------------------------------------------

    @abc.abstractmethod
    async def add_port(
        self,
        bridge: str,
        name: str,
        *,
        kind: str = "system",
        mtu: int = 0,
        members: tuple[str, ...] = (),
        options: Mapping[str, str] | None = None,
        external_ids: Mapping[str, str] | None = None,
    ) -> None:
        """A port that is not a guest's: a PIF (``system``), an ``internal`` port, a bond of
        ``members`` (``options`` carries its mode), a ``gre``/``vxlan`` tunnel."""

    @abc.abstractmethod
    async def remove_port(self, name: str) -> None:
        """Remove a port if it exists."""

    @abc.abstractmethod
    async def set_port(
        self, name: str, *, tag: int | None = None, options: Mapping[str, str] | None = None
    ) -> None:
        """Change a port's VLAN tag (-1 for none) or its options (a bond's mode)."""

    @abc.abstractmethod
    async def plug_vif(self, spec: VifSpec) -> PortState:
        """Make the guest interface's host side a port of ``spec.bridge`` with its external
        ids, MTU, QoS and locking rules; return it with its ``ofport``. A disabled VIF is
        prepared but on no bridge, as XenServer leaves it."""

    @abc.abstractmethod
    async def attach_vif(self, spec: VifSpec) -> PortState:
        """(Re)make the port of an existing host side (``VIF.move``, repairs): as
        :meth:`plug_vif` without touching the link the guest holds."""

    @abc.abstractmethod
    async def unplug_vif(self, name: str) -> None:
        """Remove the VIF's port, its flows and its host side."""

    @abc.abstractmethod
    async def set_locking(self, name: str, bridge: str, locking: Locking) -> None:
        """Replace the VIF's locking rules (and bridge membership, for ``disabled``)."""

    @abc.abstractmethod
    async def set_qos(self, name: str, kbps: int) -> None:
        """Ingress policing on the VIF's interface, ``kbps`` (0 for none)."""

    @abc.abstractmethod
    async def set_mtu(self, name: str, mtu: int) -> None:
        """The MTU of a port's interface (or of a bridge's own interface)."""

    async def apply(
        self,
        *,
        remove_ports: Sequence[str] = (),
        remove_bridges: Sequence[str] = (),
        bridges: Sequence[BridgeSpec] = (),
        vifs: Sequence[VifSpec] = (),
        ports: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Many changes at once (start-up repairs): remove ``remove_ports`` and
        ``remove_bridges``, then make ``bridges`` (parents first), the ports of existing
        guest links ``vifs`` and the system ports ``ports`` ((bridge, device) pairs). A driver
        may do it in fewer steps than one call each; this one does one call each."""
        for name in remove_ports:
            await self.remove_port(name)
        for name in remove_bridges:
            await self.destroy_bridge(name)
        for spec in sorted(bridges, key=lambda b: bool(b.parent)):
            await self.ensure_bridge(spec)
        for vif in vifs:
            await self.attach_vif(vif)
        for bridge, device in ports:
            await self.add_port(bridge, device)

    # flows --------------------------------------------------------------------------------

    @abc.abstractmethod
    async def flows(self, bridge: str) -> list[str]:
        """The bridge's OpenFlow rules, as ``ovs-ofctl dump-flows`` prints them."""

    @abc.abstractmethod
    async def add_flow(self, bridge: str, flow: str) -> None: ...

    @abc.abstractmethod
    async def del_flows(self, bridge: str, match: str) -> None: ...

    @abc.abstractmethod
    async def trace(self, bridge: str, packet: Mapping[str, object]) -> TraceResult:
        """Where ``packet`` (OpenFlow fields, ``in_port`` included) goes on ``bridge``."""
