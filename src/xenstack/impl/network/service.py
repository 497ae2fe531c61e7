"""The host's switch as a service of the toolstack: started, reconciled, stopped; the DHCP
servers of the networks that need one, and the XenAPI on the host-internal management
network (HIMN) at ``http://169.254.0.1/``.

Networks with a DHCP server of xenstack's: the HIMN (on a real switch only: it is a qemu
host's, off on a simulated one) and any network whose ``other_config:xenstack-dhcp`` names
the host's address on it (``10.1.0.1/24``): the server hands out the rest of that subnet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ...net import Switch, SwitchError
from ...net.dhcp import DhcpServer
from ...net.doctor import DhcpFacts
from ...net.himn import Relay, listening_socket
from .metrics import INTERVAL as METRICS_INTERVAL
from .metrics import Sampler
from .pif_devices import real_devices
from .ports import ensure_network
from .reconcile import Repairs, reconcile

if TYPE_CHECKING:
    from ...core.context import Services

log = logging.getLogger(__name__)
HIMN_KEY = "is_host_internal_management_network"
HIMN_CIDR = "169.254.0.1/16"
HIMN_HOST = "169.254.0.1"
DHCP_KEY = "xenstack-dhcp"


class NetworkService:
    def __init__(self, services: Services, switch: Switch) -> None:
        self.services = services
        self.switch = switch
        self.repairs = Repairs()
        self.started = False
        self.dhcp: dict[str, DhcpServer] = {}  # network ref -> its server
        self.relay: Relay | None = None
        self.sampler = Sampler(services)
        self._sampling: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.switch.start()
        self.started = True
        self.repairs = await reconcile(self.services)
        self._sampling = asyncio.create_task(self._sample_forever())
        if real_devices(self.services) and self.services.state_dir is not None:
            for ref in list(self.services.db.table("network").rows):
                if dhcp_cidr(self.services, ref):
                    await self.ensure_dhcp(ref)

    async def ensure_dhcp(self, network: str) -> None:
        """Start the network's DHCP server if it needs one and has none running."""
        cidr = dhcp_cidr(self.services, network)
        state = self.services.state_dir
        if not cidr or state is None or not real_devices(self.services):
            return
        server = self.dhcp.get(network)
        if server is not None and server.running():
            return
        row = self.services.db.get("network", network)
        await ensure_network(self.services, network)
        first, last = ("169.254.0.2", "169.254.0.254") if cidr == HIMN_CIDR else ("", "")
        server = DhcpServer(
            self.switch.netns,
            row["bridge"],
            cidr,
            Path(state),
            first=first,
            last=last,
            mtu=row["MTU"],
        )
        try:
            await server.start()
        except SwitchError as exc:
            log.warning("the DHCP server of %s did not start: %s", row["bridge"], exc)
            return
        self.dhcp[network] = server

    def dhcp_facts(self, network: str) -> DhcpFacts | None:
        """What the doctor needs to know of the network's DHCP server (None: it has none)."""
        if not dhcp_cidr(self.services, network) or not real_devices(self.services):
            return None
        server = self.dhcp.get(network)
        if server is None:
            return DhcpFacts(False, (), "restart xenstack serve (it starts the server)")
        return DhcpFacts(server.running(), server.leased_macs(), server.command())

    async def serve_himn(self, http_port: int) -> None:
        """The XenAPI at http://169.254.0.1/ for guests on the HIMN (real switch only)."""
        himn = next(
            (
                r
                for r in self.services.db.table("network").rows
                if dhcp_cidr(self.services, r) == HIMN_CIDR
            ),
            None,
        )
        if himn is None or himn not in self.dhcp:
            return
        try:
            sock = listening_socket(self.switch.netns, HIMN_HOST, 80)
        except OSError as exc:
            log.warning("the XenAPI is not served on the HIMN: %s", exc)
            return
        self.relay = Relay(sock, http_port)
        await self.relay.start()

    async def _sample_forever(self) -> None:
        while True:
            await asyncio.sleep(METRICS_INTERVAL)
            try:
                await self.sampler.sample()
            except (SwitchError, OSError) as exc:
                log.warning("no switch counters this time: %s", exc)

    async def stop(self) -> None:
        if self._sampling is not None:
            self._sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampling
            self._sampling = None
        if self.relay is not None:
            await self.relay.stop()
            self.relay = None
        for server in self.dhcp.values():
            await server.stop()
        self.dhcp.clear()
        if self.started:
            self.started = False
            await self.switch.stop()


def dhcp_cidr(services: Services, network: str) -> str:
    """The host's address on ``network`` when xenstack serves DHCP there, else ""."""
    row = services.db.table("network").rows.get(network)
    if row is None:
        return ""
    if row["other_config"].get(HIMN_KEY, "").lower() == "true":
        return HIMN_CIDR
    return str(row["other_config"].get(DHCP_KEY, ""))
