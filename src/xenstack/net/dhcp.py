"""DHCP servers xenstack runs for its networks: one dnsmasq per network that needs one.

The server sits on the network bridge's own (internal) port in the switch's namespace, with
the network's host address (169.254.0.1/16 on the host-internal management network), answers
only there (``--bind-interfaces``), keeps its leases and pid under the state directory, and is
stopped with the toolstack. The switch namespace answers ARP only for addresses on the asking
interface (``arp_ignore=1``), so the host never answers for guests on their taps.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import shlex
import signal
from pathlib import Path

from .command import in_netns, run


class DhcpServer:
    def __init__(
        self,
        netns: str,
        interface: str,
        cidr: str,
        state_dir: Path,
        *,
        first: str = "",
        last: str = "",
        mtu: int = 1500,
    ) -> None:
        self.netns = netns
        self.interface = interface
        self.cidr = cidr
        iface = ipaddress.ip_interface(cidr)
        hosts = iface.network.hosts()
        self.first = first or str(next(h for h in hosts if h != iface.ip))
        broadcast = iface.network.broadcast_address
        self.last = last or str(min(broadcast - 1, ipaddress.ip_address(self.first) + 250))
        self.netmask = str(iface.network.netmask)
        self.mtu = mtu
        self.dir = Path(state_dir) / "dhcp"
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def leasefile(self) -> Path:
        return self.dir / f"{self.interface}.leases"

    @property
    def pidfile(self) -> Path:
        return self.dir / f"{self.interface}.pid"

    def argv(self) -> list[str]:
        return in_netns(
            self.netns,
            [
                "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--port=0",
                f"--interface={self.interface}",
                "--bind-interfaces",
                "--except-interface=lo",
                f"--dhcp-range={self.first},{self.last},{self.netmask},1h",
                f"--dhcp-option=option:mtu,{self.mtu}",
                "--dhcp-option=option:router",
                "--dhcp-authoritative",
                "--no-ping",
                f"--dhcp-leasefile={self.leasefile}",
                f"--pid-file={self.pidfile}",
            ],
        )

    def command(self) -> str:
        return shlex.join(self.argv())

    async def start(self) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        await self._stop_stale()
        ip = ["ip", *(("-n", self.netns) if self.netns else ())]
        await run([*ip, "addr", "replace", self.cidr, "dev", self.interface])
        await run([*ip, "link", "set", "dev", self.interface, "up"])
        if self.netns:
            await run(in_netns(self.netns, ["sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1"]))
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv(), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )

    async def _stop_stale(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pidfile.read_text().strip())
            if Path(f"/proc/{pid}/comm").read_text().strip() == "dnsmasq":
                os.kill(pid, signal.SIGTERM)

    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None and _alive(self.proc.pid)

    def leased_macs(self) -> tuple[str, ...]:
        try:
            lines = self.leasefile.read_text().splitlines()
        except OSError:
            return ()
        return tuple(line.split()[1] for line in lines if len(line.split()) > 2)

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().split()
    except OSError:
        return False
    return stat[2] != "Z"
