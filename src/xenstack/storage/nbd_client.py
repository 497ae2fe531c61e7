"""A small blocking NBD client (newstyle fixed, simple replies), for tools and tests.

One request at a time. Server errors raise :class:`NbdClientError` with the errno.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct

from xenstack.storage import nbd_protocol as p
from xenstack.storage.buffers import aligned_buffer


class NbdClientError(Exception):
    """The server refused a request or broke the protocol.

    ``errno``: a command's error; ``reply``: the option reply refusing an option (e.g.
    ``REP_ERR_POLICY``), else 0.
    """

    def __init__(self, message: str, errno: int = 0, reply: int = 0) -> None:
        super().__init__(message)
        self.errno = errno
        self.reply = reply


class NbdClient:
    """A connection to one export. Use as a context manager or call :meth:`close`."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._cookie = 0
        self.size = 0
        self.flags = 0

    @classmethod
    def connect(
        cls, export: str, *, unix_path: str | None = None, port: int | None = None,
        host: str = "127.0.0.1", use_export_name: bool = False,
        tls: ssl.SSLContext | None = None, server_hostname: str | None = None,
    ) -> NbdClient:  # fmt: skip
        """Connect and select ``export`` with OPT_GO (or the older OPT_EXPORT_NAME); with
        ``tls`` (a client context) the connection is upgraded by STARTTLS first."""
        client = cls(_open_socket(unix_path, host, port))
        try:
            client._hello()
            if tls is not None:
                client._starttls(tls, server_hostname or host)
            if use_export_name:
                client._export_name(export)
            else:
                client._go(export)
        except BaseException:
            client._sock.close()
            raise
        return client

    @classmethod
    def list_exports(
        cls, *, unix_path: str | None = None, port: int | None = None, host: str = "127.0.0.1"
    ) -> list[str]:
        """The names a server offers (OPT_LIST), then OPT_ABORT."""
        client = cls(_open_socket(unix_path, host, port))
        try:
            client._hello()
            client._option(p.OPT_LIST, b"")
            names = []
            while True:
                kind, data = client._option_reply(p.OPT_LIST)
                if kind == p.REP_ACK:
                    break
                if kind != p.REP_SERVER:
                    raise NbdClientError(f"listing refused (reply {kind:#x})", reply=kind)
                (length,) = struct.unpack_from(">I", data)
                names.append(bytes(data[4 : 4 + length]).decode())
            client._option(p.OPT_ABORT, b"")
            return names
        finally:
            client._sock.close()

    def __enter__(self) -> NbdClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def read(self, offset: int, length: int) -> memoryview:
        """``length`` bytes at ``offset``."""
        self._request(p.CMD_READ, offset, length)
        return self._reply(length)

    def write(self, offset: int, data: bytes, *, fua: bool = False) -> None:
        """Write ``data`` at ``offset`` (``fua``: durable before the reply)."""
        self._request(p.CMD_WRITE, offset, len(data), data, p.CMD_FLAG_FUA if fua else 0)
        self._reply(0)

    def write_zeroes(self, offset: int, length: int) -> None:
        """Zero ``length`` bytes at ``offset`` (NBD_CMD_WRITE_ZEROES)."""
        self._request(p.CMD_WRITE_ZEROES, offset, length)
        self._reply(0)

    def flush(self) -> None:
        """Ask the server to make completed writes durable."""
        self._request(p.CMD_FLUSH, 0, 0)
        self._reply(0)

    def close(self) -> None:
        """Send DISC and close (idempotent)."""
        if self._sock.fileno() >= 0:
            with contextlib.suppress(OSError):
                self._request(p.CMD_DISC, 0, 0)
            self._sock.close()

    def _hello(self) -> None:
        magic, opt_magic, flags = p.HELLO.unpack(self._recv(p.HELLO.size))
        if magic != p.NBDMAGIC or opt_magic != p.IHAVEOPT:
            raise NbdClientError("not a newstyle NBD server")
        if not flags & p.FLAG_FIXED_NEWSTYLE:
            raise NbdClientError("server is not fixed-newstyle")
        self._no_zeroes = bool(flags & p.FLAG_NO_ZEROES)
        mine = p.FLAG_C_FIXED_NEWSTYLE | (p.FLAG_C_NO_ZEROES if self._no_zeroes else 0)
        self._sock.sendall(struct.pack(">I", mine))

    def _starttls(self, tls: ssl.SSLContext, server_hostname: str) -> None:
        self._option(p.OPT_STARTTLS, b"")
        kind, _ = self._option_reply(p.OPT_STARTTLS)
        if kind != p.REP_ACK:
            raise NbdClientError(f"STARTTLS refused (reply {kind:#x})")
        self._sock = tls.wrap_socket(self._sock, server_hostname=server_hostname)

    def _go(self, export: str) -> None:
        name = export.encode()
        self._option(p.OPT_GO, struct.pack(">I", len(name)) + name + struct.pack(">H", 0))
        while True:
            kind, data = self._option_reply(p.OPT_GO)
            if kind == p.REP_ACK:
                return
            if kind == p.REP_INFO and struct.unpack_from(">H", data)[0] == p.INFO_EXPORT:
                _, self.size, self.flags = p.EXPORT_INFO.unpack(data)
            elif kind & (1 << 31):
                raise NbdClientError(f"export {export!r} refused (reply {kind:#x})", reply=kind)

    def _export_name(self, export: str) -> None:
        self._option(p.OPT_EXPORT_NAME, export.encode())  # a refusal closes the connection
        self.size, self.flags = struct.unpack(">QH", self._recv(10))
        if not self._no_zeroes:
            self._recv(124)

    def _option(self, option: int, data: bytes) -> None:
        self._sock.sendall(p.OPTION.pack(p.IHAVEOPT, option, len(data)) + data)

    def _option_reply(self, option: int) -> tuple[int, memoryview]:
        magic, opt, kind, length = p.OPTION_REPLY.unpack(self._recv(p.OPTION_REPLY.size))
        if magic != p.REPLY_MAGIC or opt != option:
            raise NbdClientError("bad option reply")
        return kind, self._recv(length)

    def _request(
        self, kind: int, offset: int, length: int, data: bytes = b"", flags: int = 0
    ) -> None:
        self._cookie += 1
        header = p.REQUEST.pack(p.REQUEST_MAGIC, flags, kind, self._cookie, offset, length)
        self._sock.sendall(header + data if len(data) < 65536 else header)
        if len(data) >= 65536:
            self._sock.sendall(data)

    def _reply(self, length: int) -> memoryview:
        magic, error, cookie = p.SIMPLE_REPLY.unpack(self._recv(p.SIMPLE_REPLY.size))
        if magic != p.SIMPLE_REPLY_MAGIC or cookie != self._cookie:
            raise NbdClientError("bad reply")
        if error:
            raise NbdClientError(f"server error {error}", error)
        return self._recv(length)

    def _recv(self, n: int) -> memoryview:
        buf = aligned_buffer(n)
        view = buf
        while view:
            got = self._sock.recv_into(view)
            if not got:
                raise NbdClientError("connection closed by the server")
            view = view[got:]
        return buf


def _open_socket(unix_path: str | None, host: str, port: int | None) -> socket.socket:
    if unix_path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(unix_path)
        return sock
    if port is None:
        raise ValueError("give unix_path or port")
    return socket.create_connection((host, port))
