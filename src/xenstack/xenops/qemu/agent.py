"""The guest-agent channel: XenStore-style ``key=value`` lines over a virtio-serial port.

The guest's agent (the test guest's ``xsg-agent``, or any agent speaking the same lines)
writes the keys XenServer's PV tools write into XenStore, relative to
``/local/domain/<domid>``; the host writes ``control/shutdown`` and ``control/ping`` back. A
``key=`` line with nothing after the ``=`` removes the key. :func:`report` turns the keys into
a :class:`GuestReport` with the rules of xen-api's ``xapi_guest_agent.ml``: ``data/os_*`` are
the OS version, ``attr/PVAddons/*`` the PV drivers' version, ``attr/vif/<n>/ipv4/<i>`` the
addresses (``<n>`` mapped to the VIF's device by the MAC the agent reports beside it),
``control/*`` the ``other`` map, ``data/meminfo_*`` the memory; nothing counts until
``data/updated`` exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from ..interface import GuestReport

log = logging.getLogger(__name__)

OS_KEYS = {
    "data/os_name": "name",
    "data/os_uname": "uname",
    "data/os_distro": "distro",
    "data/os_majorver": "major",
    "data/os_minorver": "minor",
}
PV_KEYS = {
    "attr/PVAddons/MajorVersion": "major",
    "attr/PVAddons/MinorVersion": "minor",
    "attr/PVAddons/MicroVersion": "micro",
    "attr/PVAddons/BuildVersion": "build",
}
MEMORY_KEYS = {"data/meminfo_free": "free", "data/meminfo_total": "total"}


def report(
    vm_id: str, domid: int, keys: dict[str, str], macs: dict[str, str]
) -> GuestReport | None:
    """The guest metrics ``keys`` amount to (None before ``data/updated``); ``macs`` maps a
    VIF's MAC (lower case) to its device."""
    if "data/updated" not in keys:
        return None
    networks: dict[str, str] = {}
    for key, value in keys.items():
        parts = key.split("/")
        if len(parts) == 5 and parts[:2] == ["attr", "vif"] and parts[3] in ("ipv4", "ipv6"):
            mac = keys.get(f"attr/vif/{parts[2]}/mac", "").lower()
            device = macs.get(mac, parts[2])
            networks[f"{device}/{parts[3]}/{parts[4]}"] = value
            if parts[3] == "ipv4" and parts[4] == "0":
                networks[f"{device}/ip"] = value
        elif len(parts) == 3 and parts[0] == "attr" and parts[2] == "ip":  # attr/eth0/ip
            networks[f"{parts[1].removeprefix('eth')}/ip"] = value
    return GuestReport(
        vm_id=vm_id,
        domid=domid,
        os_version={OS_KEYS[k]: v for k, v in keys.items() if k in OS_KEYS},
        pv_drivers_version={PV_KEYS[k]: v for k, v in keys.items() if k in PV_KEYS},
        networks=networks,
        features=features(keys),
        memory={MEMORY_KEYS[k]: v for k, v in keys.items() if k in MEMORY_KEYS},
    )


def features(keys: dict[str, str]) -> dict[str, str]:
    """The ``control/*`` keys (bar the host's own requests), as VM_guest_metrics.other."""
    return {
        k.removeprefix("control/"): v
        for k, v in keys.items()
        if k.startswith("control/") and k not in ("control/shutdown", "control/ping")
    }


KeyCallback = Callable[[str, str | None], None]
ReportCallback = Callable[[GuestReport], None]


class GuestChannel:
    """The host end of one domain's agent port (a Unix socket QEMU serves)."""

    def __init__(
        self,
        vm_id: str,
        domid: int,
        path: str,
        macs: dict[str, str],
        on_key: KeyCallback,
        on_report: ReportCallback,
    ) -> None:
        self.vm_id, self.domid, self.path, self.macs = vm_id, domid, path, macs
        self.on_key, self.on_report = on_key, on_report
        self.keys: dict[str, str] = {}
        self.last: GuestReport | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.pending: list[bytes] = []  # written before the channel was up
        # what the host said that stays true (vm-data/...): said again once the guest's agent
        # speaks, for lines QEMU took before the guest had its port open are lost
        self.said: dict[str, str] = {}
        self.heard = False
        self.task: asyncio.Task[None] | None = None
        self.changed = asyncio.Event()

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        if self.writer is not None:
            self.writer.close()

    def write(self, key: str, value: str) -> None:
        if not key.startswith("control/"):
            self.said[key] = value
        line = f"{key}={value}\n".encode()
        if self.writer is None:
            self.pending.append(line)
        else:
            self.writer.write(line)

    async def _run(self) -> None:
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(self.path)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            self.writer = writer
            for line in self.pending:
                writer.write(line)
            self.pending.clear()
            self.heard = False
            try:
                await self._read(reader)
            finally:
                self.writer = None
                writer.close()
            await asyncio.sleep(0.2)  # QEMU closed the socket: it is going; try again

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            buffered = chunk
            while not buffered.endswith(b"\n"):
                more = await reader.read(65536)
                if not more:
                    break
                buffered += more
            self._apply(buffered.decode(errors="replace").splitlines())

    def _apply(self, lines: list[str]) -> None:
        if not self.heard and self.writer is not None:
            self.heard = True
            for key, value in self.said.items():
                self.writer.write(f"{key}={value}\n".encode())
        for line in lines:
            key, sep, value = line.partition("=")
            key = key.strip().strip("/")
            if not sep or not key or len(key) > 256 or len(value) > 4096:
                continue
            if value:
                if self.keys.get(key) == value:
                    continue
                if len(self.keys) >= 1024 and key not in self.keys:
                    continue  # as XenStore's quota: a guest cannot grow the host's memory
                self.keys[key] = value
                self.on_key(key, value)
            else:  # removed: also a key dom0 wrote (``control/shutdown=`` takes a request)
                self.keys.pop(key, None)
                self.on_key(key, None)
        self.changed.set()
        current = report(self.vm_id, self.domid, self.keys, self.macs)
        if current is not None and current != self.last:
            self.last = current
            self.on_report(current)
