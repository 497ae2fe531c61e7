"""The guest-agent channel: XenStore-style ``key=value`` lines over a virtio-serial port.

The guest's agent (the test guest's ``xsg-agent``, or any agent speaking the same lines)
writes the keys XenServer's PV tools write into XenStore, relative to
``/local/domain/<domid>``; the host writes ``control/shutdown`` and ``control/ping`` back. A
``key=`` line with nothing after the ``=`` removes the key. Every key goes to the host's
XenStore as the domain (``on_key``), where the toolstack derives the guest metrics, as for any
domain (one path); only ``attr/vif/<n>/...`` is renamed on the way: ``<n>`` is the guest's
interface number, mapped to the VIF's device by the MAC the agent reports beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

KeyCallback = Callable[[str, str | None], None]


class GuestChannel:
    """The host end of one domain's agent port (a Unix socket QEMU serves)."""

    def __init__(
        self,
        vm_id: str,
        domid: int,
        path: str,
        macs: dict[str, str],
        on_key: KeyCallback,
    ) -> None:
        self.vm_id, self.domid, self.path, self.macs = vm_id, domid, path, macs
        self.on_key = on_key
        self.keys: dict[str, str] = {}
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
                self.on_key(self._device_key(key), value)
            else:  # removed: also a key dom0 wrote (``control/shutdown=`` takes a request)
                self.keys.pop(key, None)
                self.on_key(self._device_key(key), None)
        self.changed.set()

    def _device_key(self, key: str) -> str:
        """``attr/vif/<n>/...`` with the guest's interface ``<n>`` made the VIF's device (by
        the MAC the agent reported for it); any other key as it is."""
        parts = key.split("/")
        if len(parts) < 4 or parts[:2] != ["attr", "vif"]:
            return key
        mac = self.keys.get(f"attr/vif/{parts[2]}/mac", "").lower()
        parts[2] = self.macs.get(mac, parts[2])
        return "/".join(parts)
