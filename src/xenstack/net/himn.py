"""The XenAPI as guests on the host-internal management network reach it: ``http://169.254.0.1/``.

A listening socket is made inside the switch's namespace (a short-lived thread enters it with
``setns``; the socket stays there) and each connection is relayed to the toolstack's own
HTTP port on 127.0.0.1. Guests still log in like any client: the relay grants nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
import threading

CLONE_NEWNET = 0x40000000


def listening_socket(netns: str, host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host:port`` in ``netns`` ("" for this namespace)."""
    box: dict[str, object] = {}

    def make() -> None:
        try:
            box["sock"] = _in_netns(netns, host, port)
        except BaseException as exc:
            box["error"] = exc

    if not netns:
        return _bind(host, port)
    worker = threading.Thread(target=make, name="xenstack-himn-socket")
    worker.start()
    worker.join(30)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    sock = box["sock"]
    assert isinstance(sock, socket.socket)
    return sock


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(64)
    sock.setblocking(False)
    return sock


def _in_netns(netns: str, host: str, port: int) -> socket.socket:
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {netns} failed")
        try:
            return _bind(host, port)
        finally:
            # the thread ends right after; a failed return only leaves it where it dies
            libc.setns(own, CLONE_NEWNET)
    finally:
        os.close(own)
        os.close(target)


class Relay:
    """Relays connections accepted on a socket to ``127.0.0.1:port``."""

    def __init__(self, sock: socket.socket, port: int) -> None:
        self.sock = sock
        self.port = port
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, sock=self.sock)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 5)
            self.server = None


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
