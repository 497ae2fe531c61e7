"""Benchmark (c): sequential NBD reads of a 3-deep VHD chain from our server, against
``qemu-nbd`` serving the same disk flattened to a raw file; the same reader for both.

Readers: our blocking Python client reading 4 MiB requests front to back, and
``qemu-img bench`` reading 4 MiB requests sequentially with 1 or 8 of them in flight.
Each server runs in its own process. Reported: MiB/s (median of runs) and ours / qemu.

Run: ``python bench/bench_nbd.py [--size-gib N] [--runs N] [--dir DIR] [--uvloop]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from xenstack.storage.nbd import VhdBackend, serve_nbd
from xenstack.storage.nbd_client import NbdClient
from xenstack.storage.vhd import VhdImage, create_dynamic

MIB = 1024 * 1024
GIB = 1024 * MIB
REQUEST = 4 * MIB


def build_chain(d: Path, size: int) -> tuple[Path, Path]:
    """base (all data) <- mid (a third, scattered) <- leaf (a sixth); and the flat raw."""
    rng = random.Random(7)
    payload = os.urandom(8 * MIB)
    view = memoryview(payload)
    base, mid, leaf = d / "base.vhd", d / "mid.vhd", d / "leaf.vhd"
    create_dynamic(str(base), size)
    with VhdImage.open(str(base)) as image:
        for offset in range(0, size, 8 * MIB):
            image.write(offset, payload[: min(8 * MIB, size - offset)])
    for path, parent, share in ((mid, base, 3), (leaf, mid, 6)):
        create_dynamic(str(path), parent=str(parent))
        with VhdImage.open(str(path)) as image:
            for _ in range(size // (64 * 1024) // share):
                offset = rng.randrange(0, size // 4096) * 4096
                length = min(rng.choice([4096, 65536, 256 * 1024]), size - offset)
                start = rng.randrange(0, MIB)
                image.write(offset, view[start : start + length])
    flat = d / "flat.raw"
    with VhdImage.open(str(leaf), writable=False) as image, open(flat, "wb") as f:
        for offset in range(0, size, 8 * MIB):
            f.write(image.read_view(offset, min(8 * MIB, size - offset)))
    return leaf, flat


def serve(leaf: str, sock: str, use_uvloop: bool) -> None:
    """Run our server until SIGTERM (the child process's whole life)."""
    if use_uvloop:
        import uvloop

        uvloop.install()

    async def main() -> None:
        with VhdImage.open(leaf, writable=False) as image:
            server = await serve_nbd({"disk": VhdBackend(image)}, unix_path=sock)
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            print("ready", flush=True)
            await stop.wait()
            await server.close()

    asyncio.run(main())


def start_ours(leaf: Path, sock: Path, use_uvloop: bool) -> subprocess.Popen[bytes]:
    args = [sys.executable, __file__, "--serve", str(leaf), str(sock)]
    proc = subprocess.Popen([*args, *(["--uvloop"] if use_uvloop else [])], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    return proc


def start_qemu(flat: Path, sock: Path) -> subprocess.Popen[bytes]:
    cmd = ["qemu-nbd", "-r", "-f", "raw", "-x", "disk", "-k", str(sock), "-t", str(flat)]
    proc = subprocess.Popen(cmd)
    for _ in range(200):
        if sock.exists():
            return proc
        time.sleep(0.02)
    raise RuntimeError("qemu-nbd did not start")


def read_with_client(sock: Path) -> float:
    """MiB/s reading the whole export with our client, 4 MiB per request."""
    with NbdClient.connect("disk", unix_path=str(sock)) as client:
        started = time.perf_counter()
        for offset in range(0, client.size, REQUEST):
            client.read(offset, min(REQUEST, client.size - offset))
        return client.size / MIB / (time.perf_counter() - started)


def read_with_qemu_bench(sock: Path, size: int, depth: int) -> float:
    """MiB/s of ``qemu-img bench``: sequential 4 MiB reads, ``depth`` requests in flight."""
    url = f"nbd+unix:///disk?socket={sock}"
    count = str(size // REQUEST)
    cmd = ["qemu-img", "bench", "-q", "-f", "raw", "-c", count, "-d", str(depth), "-s", "4M", url]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return size / MIB / (time.perf_counter() - started)


def measure(server: subprocess.Popen[bytes], sock: Path, size: int, runs: int) -> dict[str, float]:
    try:
        results = {"python client": [read_with_client(sock) for _ in range(runs)]}
        for depth in (1, 8):
            name = f"qemu-img bench -d {depth}"
            results[name] = [read_with_qemu_bench(sock, size, depth) for _ in range(runs)]
        return {reader: statistics.median(mibs) for reader, mibs in results.items()}
    finally:
        server.terminate()
        server.wait(10)
        sock.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    size = int(args.size_gib * GIB) // MIB * MIB
    with tempfile.TemporaryDirectory(prefix="bench-nbd-", dir=args.dir) as tmp:
        d = Path(tmp)
        leaf, flat = build_chain(d, size)
        sock = d / "nbd.sock"
        ours = measure(start_ours(leaf, sock, args.uvloop), sock, size, args.runs)
        qemu = measure(start_qemu(flat, sock), sock, size, args.runs)
    loop = "uvloop" if args.uvloop else "asyncio"
    print(f"(c) NBD sequential read of {size / GIB:g} GiB: MiB/s, median of {args.runs}")
    print(f"    ours: 3-deep VHD chain ({loop});  qemu-nbd: flattened raw file")
    for reader in ours:
        ratio = ours[reader] / qemu[reader]
        mibs = f"ours {ours[reader]:6.0f}  qemu-nbd {qemu[reader]:6.0f}"
        print(f"    {reader:20} {mibs}  ratio {ratio:5.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3], "--uvloop" in sys.argv)
    else:
        main()
