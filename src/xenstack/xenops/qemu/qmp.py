"""One domain's QMP connection, over QEMU's own asyncio client (``qemu.qmp``).

The monitor keeps one session per domain: commands go through :meth:`Monitor.execute`, and
every event QEMU sends (SHUTDOWN, RESET, STOP, RESUME, GUEST_PANICKED, DEVICE_DELETED...) is
handed to the callback in the order it came, until QEMU goes away, when ``on_event`` gets a
final ``("DISCONNECTED", {})``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from qemu.qmp import ConnectError, ExecuteError, QMPClient, Runstate

from ..interface import XenopsError

log = logging.getLogger(__name__)

EventHandler = Callable[[str, dict[str, Any]], object]


class QmpError(XenopsError):
    """QEMU refused a command; the text is its own."""


class Monitor:
    """The QMP session of one domain."""

    def __init__(self, name: str, path: str, on_event: EventHandler) -> None:
        self.path = path
        self.on_event = on_event
        self.client = QMPClient(name)
        self._pump: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self.closing = False  # set when the toolstack closes the session itself
        self._waiters: list[tuple[str, asyncio.Future[dict[str, Any]]]] = []

    async def connect(self, timeout: float = 30.0) -> None:
        """Connect (retrying while QEMU has not yet made its socket) and start the events."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                await self.client.connect(self.path)
                break
            except ConnectError as exc:
                if loop.time() > deadline:
                    raise XenopsError(f"QMP {self.path}: {exc}") from None
                await asyncio.sleep(0.02)
        self._pump = asyncio.create_task(self._events())
        self._watch = asyncio.create_task(self._watch_state())

    async def _events(self) -> None:
        async for event in self.client.events:
            raw = event.get("data", {})
            name, data = str(event["event"]), dict(raw) if isinstance(raw, dict) else {}
            for wanted, fut in list(self._waiters):
                if wanted == name and not fut.done():
                    fut.set_result(data)
            try:
                self.on_event(name, data)
            except Exception:
                log.exception("QMP event %s of %s", name, self.path)

    async def _watch_state(self) -> None:
        """Tell ``on_event`` once the session ends (QEMU exited or was killed)."""
        while self.client.runstate == Runstate.RUNNING:
            await self.client.runstate_changed()
        if self._pump is not None:
            await asyncio.sleep(0)  # let queued events go first
            self._pump.cancel()
        if not self.closing:
            self.on_event("DISCONNECTED", {})

    def expect(self, event: str) -> asyncio.Future[dict[str, Any]]:
        """A future set with the data of the next ``event``: take it before acting."""
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.append((event, fut))
        fut.add_done_callback(lambda f: self._waiters.remove((event, f)))
        return fut

    async def execute(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        try:
            return await self.client.execute(cmd, args)
        except ExecuteError as exc:
            raise QmpError(f"{cmd}: {exc.error.error.desc}") from None
        except Exception as exc:
            raise XenopsError(f"{cmd}: QMP connection lost ({exc})") from None

    def send_fd(self, fd: int) -> None:
        """Pass ``fd`` to QEMU (for a ``getfd`` next) on the QMP socket, with one blank byte
        (whitespace between QMP messages). ``qemu.qmp``'s own ``send_fd_scm`` wants the
        standard event loop's socket object; this works under uvloop too."""
        writer = self.client._writer
        if writer is None:
            raise XenopsError(f"QMP {self.path}: not connected")
        raw = writer.transport.get_extra_info("socket")
        with socket.socket(fileno=os.dup(raw.fileno())) as sock:
            socket.send_fds(sock, [b" "], [fd])

    async def close(self) -> None:
        """Leave the session (QEMU runs on); no DISCONNECTED event follows."""
        self.closing = True
        with contextlib.suppress(Exception):
            await self.client.disconnect()
        for task in (self._pump, self._watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
