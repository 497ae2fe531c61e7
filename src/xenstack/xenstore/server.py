"""XenStore over a Unix socket: each client is a connection with dom0's rights.

Requests are answered in order; watch events are sent as they fire (``XS_WATCH_EVENT`` with
``path NUL token NUL``). A malformed header or an oversized payload closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from . import wire
from .errors import XsError
from .store import Connection, XenStore
from .wire import NUL, Message, Op

Handler = Callable[[Connection, list[bytes], bytes, int], bytes]


def _text(part: bytes) -> str:
    try:
        return part.decode("ascii")
    except UnicodeDecodeError:
        raise XsError("EINVAL") from None


def _arg(args: list[bytes], i: int) -> str:
    if len(args) <= i:
        raise XsError("EINVAL")
    return _text(args[i])


def _domid(args: list[bytes], i: int = 0) -> int:
    text = _arg(args, i)
    if not text.isdigit():
        raise XsError("EINVAL")
    return int(text)


OK = b"OK" + NUL


def _write(c: Connection, a: list[bytes], payload: bytes, tx: int) -> bytes:
    path, sep, value = payload.partition(NUL)
    if not sep:
        raise XsError("EINVAL")
    c.write(_text(path), value, tx)
    return OK


def _end(c: Connection, a: list[bytes], payload: bytes, tx: int) -> bytes:
    flag = _arg(a, 0)
    if flag not in ("T", "F"):
        raise XsError("EINVAL")
    c.transaction_end(tx, flag == "T")
    return OK


def _directory_part(c: Connection, a: list[bytes], payload: bytes, tx: int) -> bytes:
    children = c.directory(_arg(a, 0), tx)
    offset = int(_arg(a, 1)) if len(a) > 1 and _arg(a, 1).isdigit() else 0
    body = b"".join(name.encode() + NUL for name in children)
    head = b"0" + NUL  # the generation: 0, as nothing here tells listings apart
    room = wire.PAYLOAD_MAX - len(head) - 1
    part = body[offset : offset + room]
    if offset + room < len(body):  # more to come: end at a whole name, no terminator
        return head + part[: part.rfind(NUL) + 1]
    return head + part + NUL


def _ack(fn: Callable[[Connection, list[bytes], int], object]) -> Handler:
    def handler(c: Connection, a: list[bytes], payload: bytes, tx: int) -> bytes:
        fn(c, a, tx)
        return OK

    return handler


HANDLERS: dict[int, Handler] = {
    Op.READ: lambda c, a, _, tx: c.read(_arg(a, 0), tx),
    Op.DIRECTORY: lambda c, a, _, tx: wire.strings(*c.directory(_arg(a, 0), tx)),
    Op.DIRECTORY_PART: _directory_part,
    Op.GET_PERMS: lambda c, a, _, tx: wire.strings(*c.get_perms(_arg(a, 0), tx)),
    Op.WRITE: _write,
    Op.MKDIR: _ack(lambda c, a, tx: c.mkdir(_arg(a, 0), tx)),
    Op.RM: _ack(lambda c, a, tx: c.rm(_arg(a, 0), tx)),
    Op.SET_PERMS: _ack(lambda c, a, tx: c.set_perms(_arg(a, 0), [_text(x) for x in a[1:]], tx)),
    Op.WATCH: _ack(lambda c, a, tx: c.watch(_arg(a, 0), _arg(a, 1))),
    Op.UNWATCH: _ack(lambda c, a, tx: c.unwatch(_arg(a, 0), _arg(a, 1))),
    Op.RESET_WATCHES: _ack(lambda c, a, tx: c.reset_watches()),
    Op.TRANSACTION_START: lambda c, a, _, tx: wire.strings(str(c.transaction_start())),
    Op.TRANSACTION_END: _end,
    Op.INTRODUCE: _ack(lambda c, a, tx: c.introduce(_domid(a))),
    Op.RELEASE: _ack(lambda c, a, tx: c.release(_domid(a))),
    Op.IS_DOMAIN_INTRODUCED: lambda c, a, _, tx: b"T\0" if c.is_introduced(_domid(a)) else b"F\0",
    Op.GET_DOMAIN_PATH: lambda c, a, _, tx: wire.strings(f"/local/domain/{_domid(a)}"),
    Op.RESUME: _ack(lambda c, a, tx: _domid(a)),
    Op.SET_TARGET: _ack(lambda c, a, tx: (_domid(a, 0), _domid(a, 1))),
    Op.RESTRICT: _ack(lambda c, a, tx: c.restrict(_domid(a))),
    Op.RESTRICT_OLD: _ack(lambda c, a, tx: c.restrict(_domid(a))),
}


def answer(conn: Connection, msg: Message) -> Message:
    """The reply to one request on ``conn``."""
    handler = HANDLERS.get(msg.op)
    try:
        if handler is None:
            raise XsError("ENOSYS")
        body = handler(conn, wire.split(msg.payload), msg.payload, msg.tx_id)
    except XsError as exc:
        return Message(Op.ERROR, msg.req_id, msg.tx_id, exc.name.encode() + NUL)
    if len(body) > wire.PAYLOAD_MAX:
        return Message(Op.ERROR, msg.req_id, msg.tx_id, b"E2BIG\0")
    return Message(msg.op, msg.req_id, msg.tx_id, body)


async def _serve_client(
    store: XenStore, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    held: list[bytes] | None = None  # events fired while a request is answered go after it

    def sink(path: str, token: str) -> None:
        event = Message(Op.WATCH_EVENT, 0, 0, wire.strings(path, token)).encode()
        if held is not None:
            held.append(event)
        elif not writer.is_closing():
            writer.write(event)

    conn = store.connect(0, sink)
    try:
        while True:
            head = await reader.readexactly(wire.HEADER.size)
            op, req_id, tx_id, length = wire.HEADER.unpack(head)
            if length > wire.PAYLOAD_MAX:
                break
            payload = await reader.readexactly(length)
            held = []
            reply = answer(conn, Message(op, req_id, tx_id, payload)).encode()
            events, held = held, None
            writer.write(reply + b"".join(events))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        conn.close()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


class SocketServer:
    """``store`` served on the Unix socket ``path`` (made 0600, its directory 0700)."""

    def __init__(self, store: XenStore, path: Path) -> None:
        self.store = store
        self.path = path
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        old = os.umask(0o077)
        try:
            self.server = await asyncio.start_unix_server(
                lambda r, w: _serve_client(self.store, r, w), str(self.path)
            )
        finally:
            os.umask(old)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 5)
            self.server = None
        self.path.unlink(missing_ok=True)
