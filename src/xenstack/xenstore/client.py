"""A small blocking XenStore client over the Unix socket, for the dom0 tools.

It sends one request at a time and keeps the watch events that arrive meanwhile, in order.
The socket is ``$XENSTORED_PATH`` (as Xen's libxenstore reads it), else
``/var/run/xenstored/socket``.
"""

from __future__ import annotations

import os
import socket
from collections import deque

from . import wire
from .errors import XsError
from .wire import NUL, Message, Op

DEFAULT_SOCKET = "/var/run/xenstored/socket"


def socket_path() -> str:
    return os.environ.get("XENSTORED_PATH") or DEFAULT_SOCKET


class Client:
    def __init__(self, path: str | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path or socket_path())
        self.req_id = 0
        self.tx_id = 0
        self.events: deque[tuple[str, str]] = deque()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _recv(self) -> Message:
        head = self._exactly(wire.HEADER.size)
        op, req_id, tx_id, length = wire.HEADER.unpack(head)
        return Message(op, req_id, tx_id, self._exactly(length))

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("xenstored closed the connection")
            data += chunk
        return data

    def call(self, op: Op, payload: bytes) -> bytes:
        self.req_id += 1
        self.sock.sendall(Message(op, self.req_id, self.tx_id, payload).encode())
        while True:
            msg = self._recv()
            if msg.op == Op.WATCH_EVENT:
                path, token = (p.decode() for p in wire.split(msg.payload)[:2])
                self.events.append((path, token))
                continue
            if msg.op == Op.ERROR:
                raise XsError.from_name(msg.payload.rstrip(NUL).decode(errors="replace"))
            return msg.payload

    def read(self, path: str) -> bytes:
        return self.call(Op.READ, wire.strings(path))

    def write(self, path: str, value: bytes) -> None:
        self.call(Op.WRITE, path.encode() + NUL + value)

    def mkdir(self, path: str) -> None:
        self.call(Op.MKDIR, wire.strings(path))

    def rm(self, path: str) -> None:
        self.call(Op.RM, wire.strings(path))

    def directory(self, path: str) -> list[str]:
        return [p.decode() for p in wire.split(self.call(Op.DIRECTORY, wire.strings(path)))]

    def get_perms(self, path: str) -> list[str]:
        return [p.decode() for p in wire.split(self.call(Op.GET_PERMS, wire.strings(path)))]

    def set_perms(self, path: str, perms: list[str]) -> None:
        self.call(Op.SET_PERMS, wire.strings(path, *perms))

    def watch(self, path: str, token: str) -> None:
        self.call(Op.WATCH, wire.strings(path, token))

    def next_event(self) -> tuple[str, str]:
        """The next watch event, waiting for it."""
        while not self.events:
            msg = self._recv()
            if msg.op == Op.WATCH_EVENT:
                path, token = (p.decode() for p in wire.split(msg.payload)[:2])
                self.events.append((path, token))
        return self.events.popleft()

    def transaction_start(self) -> None:
        self.tx_id = 0
        self.tx_id = int(self.call(Op.TRANSACTION_START, NUL).rstrip(NUL))

    def transaction_end(self, commit: bool = True) -> None:
        try:
            self.call(Op.TRANSACTION_END, b"T\0" if commit else b"F\0")
        finally:
            self.tx_id = 0
