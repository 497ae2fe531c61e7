"""An asyncio NBD server exporting VHD chains or raw files (newstyle fixed handshake).

Options: EXPORT_NAME, ABORT, INFO, GO, and STARTTLS when the server has a certificate
(it may then require TLS before any export is named, as XAPI's does on networks whose purpose
is ``nbd``); LIST is refused (ERR_POLICY: export names are not for anyone to enumerate);
anything else is refused with ERR_UNSUP, so clients fall back to simple replies.

Every export name a client asks for (EXPORT_NAME, INFO, GO) goes through an authoriser: a
callback turning the name into an :class:`NbdGrant` (which export, and whether this client may
write) or raising :class:`NbdRefused`. The toolstack injects one that checks the session the
name carries; without one, names are looked up in the exports as they are (a library use).
Commands: READ, WRITE, FLUSH, TRIM (a no-op, as the protocol allows), WRITE_ZEROES, DISC.
Each export's disk I/O runs on its own single worker thread, so the event loop never blocks
and an image is never used by two threads at once; connections to one export share it
(CAN_MULTI_CONN holds: FLUSH flushes everything).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import struct
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from xenstack.storage import nbd_protocol as p
from xenstack.storage.buffers import aligned_buffer
from xenstack.storage.errors import StorageError
from xenstack.storage.vhd.image import VhdImage

log = logging.getLogger(__name__)
_ZERO_CHUNK = 4 * 1024 * 1024


class NbdBackend(Protocol):
    """What an export serves. Calls come from one worker thread at a time.

    The server checks ranges against ``size`` and refuses writes when ``read_only``
    before calling. ValueError becomes EINVAL, OSError EIO (or ENOSPC), StorageError EIO.
    """

    @property
    def size(self) -> int:
        """Bytes in the export (fixed while served)."""
        ...

    @property
    def read_only(self) -> bool:
        """Whether writes are refused (EPERM)."""
        ...

    def read(self, offset: int, length: int) -> bytes | bytearray | memoryview:
        """Exactly ``length`` bytes at ``offset``."""
        ...

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data`` at ``offset``."""
        ...

    def flush(self) -> None:
        """Make every completed write durable."""
        ...


class VhdBackend:
    """Serves a :class:`VhdImage` chain; writes go into its leaf."""

    def __init__(self, image: VhdImage, *, read_only: bool = False) -> None:
        self.image = image
        self.read_only = read_only or not image.leaf.writable

    @property
    def size(self) -> int:
        return self.image.virtual_size

    def read(self, offset: int, length: int) -> memoryview:
        return self.image.read_view(offset, length)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        self.image.write(offset, data)

    def flush(self) -> None:
        self.image.flush()


class RawFileBackend:
    """Serves a raw image file. Call :meth:`close` when done."""

    def __init__(self, path: str, *, read_only: bool = False) -> None:
        self.read_only = read_only
        self._fd = os.open(path, (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC)
        self.size = os.fstat(self._fd).st_size

    def read(self, offset: int, length: int) -> memoryview:
        buf = aligned_buffer(length)
        done = os.preadv(self._fd, [buf], offset)
        if done != length:
            raise OSError(5, f"short read at {offset}")
        return buf

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self._fd, view, offset)
            view, offset = view[n:], offset + n

    def flush(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


@dataclass(frozen=True, slots=True)
class NbdGrant:
    """What an authorised client gets: the export (a key of the server's exports) and
    whether its writes are refused (EPERM, and the read-only flag in its handshake)."""

    export: str
    read_only: bool


class NbdRefused(Exception):
    """An authoriser's refusal; ``reply`` is the option reply to send (an ``REP_ERR_*``)."""

    def __init__(self, reply: int, reason: str) -> None:
        super().__init__(reason)
        self.reply = reply


Authoriser = Callable[[str], NbdGrant]  # export name -> grant; raises NbdRefused


class _Export:
    def __init__(self, name: str, backend: NbdBackend) -> None:
        self.name = name
        self.backend = backend
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"nbd-{name}")

    def flags(self, read_only: bool) -> int:
        """The transmission flags for a client (``read_only``: its grant says so)."""
        flags = p.TFLAG_HAS_FLAGS | p.TFLAG_SEND_FLUSH | p.TFLAG_SEND_FUA | p.TFLAG_CAN_MULTI_CONN
        flags |= p.TFLAG_SEND_TRIM | p.TFLAG_SEND_WRITE_ZEROES
        return flags | (p.TFLAG_READ_ONLY if read_only else 0)


class _Chosen:
    """The export a client chose, and whether its writes are refused."""

    def __init__(self, export: _Export, read_only: bool) -> None:
        self.export, self.read_only = export, read_only or export.backend.read_only
        self.flags = export.flags(self.read_only)


class _Close(Exception):
    """The connection must end (protocol violation, abort or disconnect)."""


class NbdServer:
    """A running server; ``await close()`` (or use ``async with``) to stop it."""

    def __init__(
        self,
        exports: Mapping[str, NbdBackend],
        tls: ssl.SSLContext | None = None,
        tls_required: bool = False,
        authorise: Authoriser | None = None,
    ) -> None:
        self._exports = {name: _Export(name, backend) for name, backend in exports.items()}
        self._tls, self._tls_required = tls, tls_required and tls is not None
        self._authorise = authorise or self._by_name
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._unix_path: str | None = None

    async def start(self, host: str, port: int | None, unix_path: str | None) -> None:
        """Listen on ``unix_path`` if given, else on TCP ``host:port``."""
        self._unix_path = unix_path
        if unix_path is not None:
            self._server = await asyncio.start_unix_server(self._serve, path=unix_path)
        else:
            self._server = await asyncio.start_server(self._serve, host=host, port=port or 0)

    def backend(self, name: str) -> NbdBackend:
        """What export ``name`` serves."""
        return self._exports[name].backend

    @property
    def port(self) -> int:
        """The TCP port listened on (for ``port=0``)."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening, drop every connection, stop the I/O threads, remove the socket."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            await self._server.wait_closed()
        for export in self._exports.values():
            await asyncio.get_running_loop().run_in_executor(None, export.worker.shutdown)
        if self._unix_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._unix_path)

    def _by_name(self, name: str) -> NbdGrant:
        """Without an authoriser: the export of that name (or the only one, for "")."""
        if name == "" and "" not in self._exports and len(self._exports) == 1:
            return NbdGrant(next(iter(self._exports)), False)  # the default export
        if name not in self._exports:
            raise NbdRefused(p.REP_ERR_UNKNOWN, f"no export {name!r}")
        return NbdGrant(name, False)

    async def __aenter__(self) -> NbdServer:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            handshake = _Handshake(self, reader, writer)
            chosen = await handshake.run()
            await _Transmission(chosen, reader, writer).run()
        except (_Close, asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception:
            log.exception("NBD connection failed")
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def serve_nbd(
    exports: Mapping[str, NbdBackend],
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    unix_path: str | None = None,
    tls: ssl.SSLContext | None = None,
    tls_required: bool = False,
    authorise: Authoriser | None = None,
) -> NbdServer:
    """Start serving ``exports`` (name -> backend) on ``unix_path`` or TCP ``host:port``.

    ``port=0`` picks a free port (see :attr:`NbdServer.port`). With ``tls`` (a server
    context) clients may upgrade with STARTTLS; ``tls_required`` makes them. ``authorise``
    decides every export name a client asks for (see the module's docstring). Returns once
    listening.
    """
    if (unix_path is None) == (port is None):
        raise ValueError("give exactly one of unix_path and port")
    server = NbdServer(exports, tls, tls_required, authorise)
    await server.start(host, port, unix_path)
    return server


class _Handshake:
    """Option haggling up to the export a client chooses (or the end of the connection)."""

    def __init__(self, server: NbdServer, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.server, self.r, self.w = server, r, w
        self.tls, self.tls_required = server._tls, server._tls_required
        self.secure = False  # upgraded by STARTTLS
        self.no_zeroes = False

    async def run(self) -> _Chosen:
        self.w.write(p.HELLO.pack(p.NBDMAGIC, p.IHAVEOPT, p.FLAG_FIXED_NEWSTYLE | p.FLAG_NO_ZEROES))
        (client_flags,) = struct.unpack(">I", await self.r.readexactly(4))
        if client_flags & ~(p.FLAG_C_FIXED_NEWSTYLE | p.FLAG_C_NO_ZEROES):
            raise _Close
        self.no_zeroes = bool(client_flags & p.FLAG_C_NO_ZEROES)
        while True:
            magic, option, length = p.OPTION.unpack(await self.r.readexactly(p.OPTION.size))
            if magic != p.IHAVEOPT or length > p.MAX_OPTION:
                raise _Close
            data = await self.r.readexactly(length)
            export = await self._option(option, data)
            if export is not None:
                return export

    async def _option(self, option: int, data: bytes) -> _Chosen | None:
        if option == p.OPT_STARTTLS:
            await self._starttls(data)
            return None
        if self.tls_required and not self.secure and option != p.OPT_ABORT:
            if option == p.OPT_EXPORT_NAME:
                raise _Close  # no way to refuse it: the connection ends
            await self._reply(option, p.REP_ERR_TLS_REQD)
            return None
        if option == p.OPT_EXPORT_NAME:
            chosen = self._lookup(data.decode("utf-8", "replace"))
            if isinstance(chosen, int):
                raise _Close  # the protocol has no refusal here: the connection ends
            tail = b"" if self.no_zeroes else bytes(124)
            self.w.write(struct.pack(">QH", chosen.export.backend.size, chosen.flags) + tail)
            return chosen
        if option == p.OPT_ABORT:
            await self._reply(option, p.REP_ACK)
            raise _Close
        if option == p.OPT_LIST:
            await self._reply(option, p.REP_ERR_INVALID if data else p.REP_ERR_POLICY)
        elif option in (p.OPT_INFO, p.OPT_GO):
            return await self._info(option, data)
        else:
            await self._reply(option, p.REP_ERR_UNSUP)
        return None

    async def _starttls(self, data: bytes) -> None:
        if self.tls is None:
            await self._reply(p.OPT_STARTTLS, p.REP_ERR_UNSUP)
        elif data or self.secure:
            await self._reply(p.OPT_STARTTLS, p.REP_ERR_INVALID)
        else:
            await self._reply(p.OPT_STARTTLS, p.REP_ACK)
            await self.w.start_tls(self.tls)  # the handshake goes on inside TLS
            self.secure = True

    async def _info(self, option: int, data: bytes) -> _Chosen | None:
        parsed = _parse_info_request(data)
        if parsed is None:
            await self._reply(option, p.REP_ERR_INVALID)
            return None
        name, requests = parsed
        chosen = self._lookup(name)
        if isinstance(chosen, int):
            await self._reply(option, chosen)
            return None
        size = chosen.export.backend.size
        await self._reply(option, p.REP_INFO, p.EXPORT_INFO.pack(p.INFO_EXPORT, size, chosen.flags))
        if p.INFO_NAME in requests:
            await self._reply(option, p.REP_INFO, struct.pack(">H", p.INFO_NAME) + name.encode())
        if p.INFO_BLOCK_SIZE in requests:
            sizes = p.BLOCK_SIZE_INFO.pack(p.INFO_BLOCK_SIZE, 1, 4096, p.MAX_REQUEST)
            await self._reply(option, p.REP_INFO, sizes)
        await self._reply(option, p.REP_ACK)
        return chosen if option == p.OPT_GO else None

    def _lookup(self, name: str) -> _Chosen | int:
        """The export ``name`` grants this client, or the option reply refusing it."""
        try:
            grant = self.server._authorise(name)
        except NbdRefused as refused:
            log.info("NBD export refused: %s", refused)
            return refused.reply
        export = self.server._exports.get(grant.export)
        if export is None:
            return p.REP_ERR_UNKNOWN
        return _Chosen(export, grant.read_only)

    async def _reply(self, option: int, kind: int, data: bytes = b"") -> None:
        self.w.write(p.OPTION_REPLY.pack(p.REPLY_MAGIC, option, kind, len(data)) + data)
        await self.w.drain()


def _parse_info_request(data: bytes) -> tuple[str, set[int]] | None:
    if len(data) < 6:
        return None
    (name_len,) = struct.unpack_from(">I", data)
    if len(data) < 4 + name_len + 2:
        return None
    try:
        name = data[4 : 4 + name_len].decode()
    except UnicodeDecodeError:
        return None
    (count,) = struct.unpack_from(">H", data, 4 + name_len)
    rest = data[6 + name_len :]
    if len(rest) != 2 * count:
        return None
    return name, set(struct.unpack(f">{count}H", rest))


class _Transmission:
    """The command phase: one request at a time, I/O on the export's worker thread."""

    def __init__(self, chosen: _Chosen, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.export, self.r, self.w = chosen.export, r, w
        self.backend = chosen.export.backend
        self.read_only = chosen.read_only

    async def run(self) -> None:
        while True:
            raw = await self.r.readexactly(p.REQUEST.size)
            magic, flags, kind, cookie, offset, length = p.REQUEST.unpack(raw)
            if magic != p.REQUEST_MAGIC:
                raise _Close
            if kind == p.CMD_DISC:
                return
            payload = b""
            if kind == p.CMD_WRITE:
                if length > p.MAX_REQUEST:
                    raise _Close  # cannot skip that much safely: end the connection
                payload = await self.r.readexactly(length)
            error, data = await self._execute(kind, flags, offset, length, payload)
            self.w.write(p.SIMPLE_REPLY.pack(p.SIMPLE_REPLY_MAGIC, error, cookie))
            if not error and data is not None:
                self.w.write(data)
            await self.w.drain()

    async def _execute(
        self, kind: int, flags: int, offset: int, length: int, payload: bytes
    ) -> tuple[int, bytes | bytearray | memoryview | None]:
        work = self._work(kind, flags, offset, length, payload)
        if isinstance(work, int):
            return work, None
        loop = asyncio.get_running_loop()
        try:
            return 0, await loop.run_in_executor(self.export.worker, work)
        except ValueError:
            return p.EINVAL, None
        except OSError as exc:
            return (p.ENOSPC if exc.errno == p.ENOSPC else p.EIO), None
        except StorageError:
            log.exception("NBD export %s: I/O failed", self.export.name)
            return p.EIO, None

    def _work(
        self, kind: int, flags: int, offset: int, length: int, payload: bytes
    ) -> int | Callable[[], bytes | bytearray | memoryview | None]:
        """The job for a request, or the error to answer without doing anything."""
        b = self.backend
        writes = kind in (p.CMD_WRITE, p.CMD_WRITE_ZEROES, p.CMD_TRIM)
        if kind not in (p.CMD_READ, p.CMD_FLUSH) and not writes:
            return p.EINVAL
        if writes and self.read_only:
            return p.EPERM
        if kind in (p.CMD_READ, p.CMD_WRITE) and length > p.MAX_REQUEST:
            return p.EOVERFLOW
        if kind != p.CMD_FLUSH and offset + length > b.size:
            return p.EINVAL
        fua = bool(flags & p.CMD_FLAG_FUA)
        if kind == p.CMD_READ:
            return lambda: b.read(offset, length)
        if kind == p.CMD_FLUSH:
            return lambda: b.flush()
        if kind == p.CMD_TRIM:
            return lambda: None
        return lambda: _write(b, offset, length, payload if kind == p.CMD_WRITE else None, fua)


def _write(b: NbdBackend, offset: int, length: int, payload: bytes | None, fua: bool) -> None:
    if payload is not None:
        b.write(offset, payload)
    else:
        zeros = bytes(min(length, _ZERO_CHUNK))
        for at in range(offset, offset + length, _ZERO_CHUNK):
            b.write(at, zeros[: min(_ZERO_CHUNK, offset + length - at)])
    if fua:
        b.flush()
