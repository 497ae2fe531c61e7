"""Stream a QEMU memory image into, or out of, a VDI through the toolstack's NBD export.

QEMU saves a domain with ``migrate exec:CMD`` (the stream on CMD's stdin) and restores it
with ``-incoming exec:CMD`` (the stream on CMD's stdout); CMD is this module::

    python -I -S .../nbdio.py save SOCKET EXPORT   < stream
    python -I -S .../nbdio.py load SOCKET EXPORT   > stream

The image begins with a 4 KiB header (magic and the stream's length), the stream follows.
The client speaks the fixed-newstyle NBD handshake and the READ, WRITE, FLUSH and DISC
commands, no more; it imports nothing of the toolstack, so QEMU's helper starts fast.
"""

from __future__ import annotations

import socket
import struct
import sys
import threading

MAGIC = b"XSSUSP01"
HEADER = 4096
CHUNK = 1 << 20
READ_CHUNK = 4 << 20  # a load's requests: this large, DEPTH of them in flight
DEPTH = 4
NBDMAGIC = b"NBDMAGIC"
IHAVEOPT = 0x49484156454F5054
REQUEST, REPLY = 0x25609513, 0x67446698
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH = 0, 1, 2, 3
OPT_EXPORT_NAME = 1
FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES = 1, 2


class NbdIoError(Exception):
    pass


def _exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        part = sock.recv(n - len(buf))
        if not part:
            raise NbdIoError("the NBD server closed the connection")
        buf += part
    return bytes(buf)


class Client:
    def __init__(self, path: str, export: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        head = _exact(self.sock, 18)
        if head[:8] != NBDMAGIC or struct.unpack(">Q", head[8:16])[0] != IHAVEOPT:
            raise NbdIoError("not a newstyle NBD server")
        server_flags = struct.unpack(">H", head[16:18])[0]
        flags = FLAG_FIXED_NEWSTYLE | (server_flags & FLAG_NO_ZEROES)
        name = export.encode()
        self.sock.sendall(struct.pack(">IQII", flags, IHAVEOPT, OPT_EXPORT_NAME, len(name)) + name)
        reply = _exact(self.sock, 10 if flags & FLAG_NO_ZEROES else 134)
        self.size = int(struct.unpack(">Q", reply[:8])[0])
        self.handle = 0

    def _request(self, cmd: int, offset: int, length: int, data: bytes = b"") -> bytes:
        self.handle += 1
        head = struct.pack(">IHHQQI", REQUEST, 0, cmd, self.handle, offset, length)
        self.sock.sendall(head + data)
        magic, error, handle = struct.unpack(">IIQ", _exact(self.sock, 16))
        if magic != REPLY or handle != self.handle:
            raise NbdIoError("bad NBD reply")
        if error:
            raise NbdIoError(f"NBD error {error} at {offset}")
        return _exact(self.sock, length) if cmd == CMD_READ else b""

    def read(self, offset: int, length: int) -> bytes:
        return self._request(CMD_READ, offset, length)

    def write(self, offset: int, data: bytes) -> None:
        self._request(CMD_WRITE, offset, len(data), data)

    def close(self) -> None:
        self._request(CMD_FLUSH, 0, 0)
        head = struct.pack(">IHHQQI", REQUEST, 0, CMD_DISC, 0, 0, 0)
        self.sock.sendall(head)
        self.sock.close()


def save(client: Client, stream: object) -> int:
    read = stream.read  # type: ignore[attr-defined]
    offset = HEADER
    while True:
        data = read(CHUNK)
        if not data:
            break
        if offset + len(data) > client.size:
            raise NbdIoError("the memory image is larger than its VDI")
        client.write(offset, data)
        offset += len(data)
    length = offset - HEADER
    client.write(0, (MAGIC + struct.pack(">Q", length)).ljust(HEADER, b"\0"))
    return length


def load(client: Client, out: object) -> int:
    """Pipelined: a thread sends the READs, DEPTH ahead; this one takes the replies (in
    order: the server answers one request at a time) straight into the pipe to QEMU."""
    write = out.write  # type: ignore[attr-defined]
    head = client.read(0, HEADER)
    if head[:8] != MAGIC:
        raise NbdIoError("the VDI holds no memory image")
    length = int(struct.unpack(">Q", head[8:16])[0])
    spans = [(o, min(READ_CHUNK, length - o)) for o in range(0, length, READ_CHUNK)]
    window = threading.Semaphore(DEPTH)
    first = client.handle + 1
    sender = threading.Thread(target=_send_reads, args=(client, spans, window), daemon=True)
    sender.start()
    buf = memoryview(bytearray(READ_CHUNK))
    for i, (offset, n) in enumerate(spans):
        magic, error, handle = struct.unpack(">IIQ", _exact(client.sock, 16))
        if magic != REPLY or handle != first + i:
            raise NbdIoError("bad NBD reply")
        if error:
            raise NbdIoError(f"NBD error {error} at {HEADER + offset}")
        _exact_into(client.sock, buf[:n])
        window.release()
        write(buf[:n])
    sender.join()
    return length


def _send_reads(client: Client, spans: list[tuple[int, int]], window: threading.Semaphore) -> None:
    for offset, n in spans:
        window.acquire()
        client.handle += 1
        head = struct.pack(">IHHQQI", REQUEST, 0, CMD_READ, client.handle, HEADER + offset, n)
        client.sock.sendall(head)


def _exact_into(sock: socket.socket, view: memoryview) -> None:
    got = 0
    while got < len(view):
        part = sock.recv_into(view[got:])
        if not part:
            raise NbdIoError("the NBD server closed the connection")
        got += part


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("save", "load"):
        print("usage: nbdio save|load SOCKET EXPORT", file=sys.stderr)
        return 2
    client = Client(argv[1], argv[2])
    if argv[0] == "save":
        save(client, sys.stdin.buffer)
    else:
        load(client, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
