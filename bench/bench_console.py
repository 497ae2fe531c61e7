#!/usr/bin/env python3
"""The console relay's throughput: WebSocket (what browsers use) against CONNECT, same run.

    .venv/bin/python bench/bench_console.py [--mib 64] [--rounds 3]

A simulated pool serves /console; the running VM's console is pointed at a Unix socket that
streams ``--mib`` MiB as soon as it is connected to (standing in for QEMU's VNC server). Each
round reads it all through ``CONNECT`` (a raw socket) and through a WebSocket (aiohttp's
client), and prints MiB/s and the WebSocket/CONNECT ratio (medians).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from xenstack.testing import login, simulated_pool, vm_from_template

CHUNK = os.urandom(1 << 20)


def source(path: str, mib: int) -> socket.socket:
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                try:
                    for _ in range(mib):
                        conn.sendall(CHUNK)
                except OSError:
                    pass

    threading.Thread(target=serve, daemon=True).start()
    return server


def via_connect(port: int, query: str, total: int) -> float:
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(f"CONNECT /console?{query} HTTP/1.0\r\n\r\n".encode())
        got, head = 0, b""
        while b"\r\n\r\n" not in head:
            head += s.recv(65536)
        got = len(head.split(b"\r\n\r\n", 1)[1])
        while got < total:
            data = s.recv(1 << 20)
            if not data:
                break
            got += len(data)
    assert got >= total, got
    return time.perf_counter() - start


def via_websocket(port: int, query: str, total: int) -> float:
    async def run() -> float:
        start = time.perf_counter()
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/console?{query}"
            async with http.ws_connect(url, protocols=("binary",), max_msg_size=0) as ws:
                got = 0
                while got < total:
                    message = await ws.receive(timeout=60)
                    if message.type != aiohttp.WSMsgType.BINARY:
                        break
                    got += len(message.data)
        assert got >= total, got
        return time.perf_counter() - start

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    total = args.mib << 20
    with tempfile.TemporaryDirectory() as tmp, simulated_pool() as pool:
        sock = source(os.path.join(tmp, "vnc"), args.mib)
        session = login(pool, label="bench-console")
        vm = vm_from_template(session, "bench console")
        session.xenapi.VM.start(vm, False, False)
        [console] = session.xenapi.VM.get_consoles(vm)

        def point(ts: Any) -> None:
            ts.hypervisor.backend.console = lambda _vm: os.path.join(tmp, "vnc")

        pool.call(point)
        query = f"ref={console}&session_id={session._session}"
        times: dict[str, list[float]] = {"connect": [], "websocket": []}
        for _ in range(args.rounds):
            times["connect"].append(via_connect(pool.port, query, total))
            times["websocket"].append(via_websocket(pool.port, query, total))
        sock.close()
    rate = {k: args.mib / statistics.median(v) for k, v in times.items()}
    print(f"CONNECT   {rate['connect']:8.1f} MiB/s (baseline)")
    print(
        f"WebSocket {rate['websocket']:8.1f} MiB/s  ratio {rate['websocket'] / rate['connect']:.2f}"
    )


if __name__ == "__main__":
    main()
