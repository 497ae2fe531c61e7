"""A lean XenAPI client for ``xe``: JSON-RPC 1.0 over one kept-alive HTTP connection.

``xe`` starts once per command, so it avoids heavy imports: a raw socket speaks just enough
HTTP/1.1 to post calls to ``/jsonrpc`` on TCP or on a Unix socket.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket

TYPE_CHECKING = False  # typing is not imported at run time: start-up speed matters
if TYPE_CHECKING:
    from typing import Any


class XenApiError(Exception):
    """A XenAPI failure: the error code and its parameters, as the server sent them."""

    def __init__(self, code: str, params: list[str]) -> None:
        super().__init__(code, params)
        self.code = code
        self.params = params


class ConnectError(Exception):
    """The server could not be reached or did not speak HTTP."""


class Client:
    """One connection to a toolstack; ``call("VM.get_all", ...)`` after ``login``."""

    def __init__(self, host: str, port: int, unix_path: str | None = None) -> None:
        self.host, self.port, self.unix_path = host, port, unix_path
        self.sock: socket.socket | None = None
        self.session = ""
        self._id = 0
        self._buf = b""

    def _connect(self) -> socket.socket:
        try:
            if self.unix_path:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(self.unix_path)
            else:
                sock = socket.create_connection((self.host, self.port), timeout=600)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            raise ConnectError(str(exc.strerror or exc)) from exc
        self._buf = b""
        return sock

    def raw(self, method: str, params: list[Any]) -> Any:
        """Call ``method`` with exactly ``params`` (no session added)."""
        self._id += 1
        body = json.dumps({"method": method, "params": params, "id": self._id}).encode()
        head = (
            f"POST /jsonrpc HTTP/1.1\r\nHost: {self.host}\r\nUser-Agent: xe-cli/xenstack\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        for attempt in (0, 1):
            if self.sock is None:
                self.sock = self._connect()
            try:
                self.sock.sendall(head + body)
                data = self._response()
                break
            except (OSError, ConnectError):
                self.close()
                if attempt:
                    raise ConnectError("lost connection to the server") from None
        doc = json.loads(data)
        err = doc.get("error")
        if err:
            if isinstance(err, dict):
                raise XenApiError(str(err.get("message")), [str(p) for p in err.get("data") or []])
            raise XenApiError(str(err[0]), [str(p) for p in err[1:]])
        return doc.get("result")

    def call(self, method: str, *args: Any) -> Any:
        """Call a message that takes the session first."""
        return self.raw(method, [self.session, *args])

    def login(self, user: str, password: str) -> None:
        # Inside a host plug-in, xe acts with the calling session (XENSTACK_SESSION), as
        # XAPI's plug-ins do, and leaves it open.
        self.borrowed = os.environ.get("XENSTACK_SESSION", "")
        if self.borrowed:
            self.session = self.borrowed
            return
        self.session = str(self.raw("session.login_with_password", [user, password, "2.21", "xe"]))

    def logout(self) -> None:
        if self.session and not getattr(self, "borrowed", ""):
            with contextlib.suppress(XenApiError, ConnectError):
                self.raw("session.logout", [self.session])
            self.session = ""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _read_more(self) -> None:
        assert self.sock is not None
        chunk = self.sock.recv(1 << 22)
        if not chunk:
            raise ConnectError("the server closed the connection")
        self._buf = self._buf + chunk if self._buf else chunk

    def _response(self) -> bytes:
        while b"\r\n\r\n" not in self._buf:
            self._read_more()
        head, _, rest = self._buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        if not lines[0].startswith("HTTP/"):
            raise ConnectError("the server does not speak HTTP")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])
        }
        self._buf = rest
        if headers.get("transfer-encoding", "").lower() == "chunked":
            return self._chunked()
        length = int(headers.get("content-length", "0"))
        if len(self._buf) < length:
            parts, have = [self._buf], len(self._buf)
            assert self.sock is not None
            while have < length:
                chunk = self.sock.recv(max(length - have, 1 << 16))
                if not chunk:
                    raise ConnectError("the server closed the connection")
                parts.append(chunk)
                have += len(chunk)
            self._buf = b"".join(parts)
        body, self._buf = self._buf[:length], self._buf[length:]
        if headers.get("connection", "").lower() == "close":
            self.close()
        return body

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            while b"\r\n" not in self._buf:
                self._read_more()
            size_line, _, self._buf = self._buf.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(self._buf) < size + 2:
                self._read_more()
            parts.append(self._buf[:size])
            self._buf = self._buf[size + 2 :]
            if size == 0:
                return b"".join(parts)
