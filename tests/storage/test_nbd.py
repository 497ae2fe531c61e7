"""The NBD server, driven by our client and by QEMU's."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from storage_helpers import MIB, random_data, run

from xenstack.storage import nbd_protocol as p
from xenstack.storage.nbd import NbdBackend, NbdServer, RawFileBackend, VhdBackend, serve_nbd
from xenstack.storage.nbd_client import NbdClient, NbdClientError
from xenstack.storage.vhd import VhdImage

StartServer = Callable[..., NbdServer]


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Start servers on an event loop in a background thread; all stopped at teardown."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    servers: list[NbdServer] = []

    def start(
        exports: Mapping[str, NbdBackend], *, unix_path: str | None = None, port: int | None = None
    ) -> NbdServer:
        serving = serve_nbd(exports, unix_path=unix_path, port=port)
        server = asyncio.run_coroutine_threadsafe(serving, loop).result(10)
        servers.append(server)
        return server

    yield start
    for server in servers:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


@pytest.fixture
def served_chain(
    chain3: tuple[str, bytearray], start_server: StartServer, tmp_path: Path
) -> Iterator[tuple[str, bytearray, VhdImage]]:
    """The 3-deep chain served read-write as export "disk"; (socket, content, image)."""
    leaf, model = chain3
    sock = str(tmp_path / "nbd.sock")
    with VhdImage.open(leaf) as image:
        start_server({"disk": VhdBackend(image)}, unix_path=sock)
        yield sock, model, image


def test_list_is_refused_go_and_export_name(
    served_chain: tuple[str, bytearray, VhdImage],
) -> None:
    sock, model, _ = served_chain
    with pytest.raises(NbdClientError, match="0x80000002"):  # NBD_REP_ERR_POLICY
        NbdClient.list_exports(unix_path=sock)
    for old_style in (False, True):
        with NbdClient.connect("disk", unix_path=sock, use_export_name=old_style) as client:
            assert client.size == len(model)
            assert client.flags & p.TFLAG_HAS_FLAGS and not client.flags & p.TFLAG_READ_ONLY
            assert client.read(12345, MIB) == model[12345 : 12345 + MIB]
    with NbdClient.connect("", unix_path=sock) as client:  # the default export
        assert client.size == len(model)


def test_unknown_export_is_refused(served_chain: tuple[str, bytearray, VhdImage]) -> None:
    sock, _, _ = served_chain
    with pytest.raises(NbdClientError, match="refused"):
        NbdClient.connect("nope", unix_path=sock)
    with pytest.raises(NbdClientError, match="closed"):
        NbdClient.connect("nope", unix_path=sock, use_export_name=True)


def test_info_and_unsupported_options(served_chain: tuple[str, bytearray, VhdImage]) -> None:
    sock, model, _ = served_chain
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(sock)
    client = NbdClient(raw)
    try:
        client._hello()
        request = struct.pack(">I", 4) + b"disk" + struct.pack(">HH", 1, p.INFO_BLOCK_SIZE)
        client._option(p.OPT_INFO, request)
        replies = [client._option_reply(p.OPT_INFO) for _ in range(3)]
        assert [kind for kind, _ in replies] == [p.REP_INFO, p.REP_INFO, p.REP_ACK]
        info_type, size, _flags = p.EXPORT_INFO.unpack(replies[0][1])
        assert (info_type, size) == (p.INFO_EXPORT, len(model))
        sizes = p.BLOCK_SIZE_INFO.unpack(replies[1][1])
        assert sizes == (p.INFO_BLOCK_SIZE, 1, 4096, p.MAX_REQUEST)
        client._option(p.OPT_STRUCTURED_REPLY, b"")
        assert client._option_reply(p.OPT_STRUCTURED_REPLY)[0] == p.REP_ERR_UNSUP
        client._option(p.OPT_ABORT, b"")
        assert client._option_reply(p.OPT_ABORT)[0] == p.REP_ACK
    finally:
        raw.close()


def test_writes_land_in_the_leaf(served_chain: tuple[str, bytearray, VhdImage]) -> None:
    sock, model, image = served_chain
    data = random_data(3, 3 * MIB + 7)
    with NbdClient.connect("disk", unix_path=sock) as client:
        client.write(MIB - 3, data, fua=True)
        client.write_zeroes(10 * MIB, 2 * MIB + 512)
        client.flush()
        model[MIB - 3 : 4 * MIB + 4] = data
        model[10 * MIB : 12 * MIB + 512] = bytes(2 * MIB + 512)
        assert client.read(0, len(model)) == model
    assert image.read(0, len(model)) == model


def test_bad_requests_get_errors_not_disconnects(
    served_chain: tuple[str, bytearray, VhdImage],
) -> None:
    sock, model, _ = served_chain
    with NbdClient.connect("disk", unix_path=sock) as client:
        with pytest.raises(NbdClientError) as excinfo:
            client.read(len(model) - 10, 20)
        assert excinfo.value.errno == p.EINVAL
        with pytest.raises(NbdClientError) as excinfo:
            client.read(0, p.MAX_REQUEST + 1)
        assert excinfo.value.errno == p.EOVERFLOW
        assert client.read(0, 10) == model[:10]


def test_read_only_export_refuses_writes(
    chain3: tuple[str, bytearray], start_server: StartServer
) -> None:
    leaf, model = chain3
    with VhdImage.open(leaf, writable=False) as image:
        server = start_server({"ro": VhdBackend(image)}, port=0)
        with NbdClient.connect("ro", port=server.port) as client:
            assert client.flags & p.TFLAG_READ_ONLY
            with pytest.raises(NbdClientError) as excinfo:
                client.write(0, b"x")
            assert excinfo.value.errno == p.EPERM
            assert client.read(0, MIB) == model[:MIB]


def test_many_connections_at_once(served_chain: tuple[str, bytearray, VhdImage]) -> None:
    sock, model, _ = served_chain

    def reader(i: int) -> bool:
        with NbdClient.connect("disk", unix_path=sock) as client:
            return all(
                client.read(off, MIB) == model[off : off + MIB]
                for off in range(i * MIB, len(model), 4 * MIB)
            )

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(reader, range(4)))


def test_raw_file_backend(tmp_path: Path, start_server: StartServer) -> None:
    (tmp_path / "d.raw").write_bytes(random_data(5, 4 * MIB))
    backend = RawFileBackend(str(tmp_path / "d.raw"))
    try:
        server = start_server({"raw": backend}, port=0)
        with NbdClient.connect("raw", port=server.port) as client:
            client.write(100, b"hello")
            assert client.read(98, 9) == (tmp_path / "d.raw").read_bytes()[98:107]
    finally:
        backend.close()


@pytest.mark.qemu
def test_qemu_compares_a_3_deep_chain(
    qemu_img: str, served_chain: tuple[str, bytearray, VhdImage], tmp_path: Path
) -> None:
    sock, model, image = served_chain
    assert image.depth == 3
    (tmp_path / "flat.raw").write_bytes(model)
    url = f"nbd+unix:///disk?socket={sock}"
    out = run(qemu_img, "compare", "-f", "raw", "-F", "raw", url, str(tmp_path / "flat.raw"))
    assert "identical" in out.stdout


@pytest.mark.qemu
def test_qemu_io_writes_through_the_server(
    qemu_img: str, qemu_io: str, served_chain: tuple[str, bytearray, VhdImage]
) -> None:
    sock, model, image = served_chain
    url = f"nbd+unix:///disk?socket={sock}"
    run(qemu_io, "-f", "raw", "-c", "write -P 0xab 1000 3M", "-c", "flush", url)
    model[1000 : 1000 + 3 * MIB] = b"\xab" * (3 * MIB)
    assert image.read(0, len(model)) == model
