"""Disk transfer and constant-time clone benchmark.

    .venv/bin/python bench/bench_transfer.py [--size-gib 2]

Against a ``xenstack serve`` child: imports and exports of a disk half full of data through
``/import_raw_vdi`` and ``/export_raw_vdi`` (curl as the client; the raw export is written
sparse by a small http.client client, as qemu-img writes raw files), raw and vhd, each next to
``qemu-img convert`` doing the same conversion in the same run (ratio = qemu time / our
time; the target is >= 0.8). Then VDI.clone / VDI.snapshot of a 2040 GiB and a 1 GiB disk
over JSON-RPC, in milliseconds.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from xenstack.testing import server_process

MIB, GIB = 1 << 20, 1 << 30


def make_source(path: Path, size: int) -> None:
    """A raw disk whose every other 4 MiB stretch holds random data (half full)."""
    with open(path, "wb") as f:
        f.truncate(size)
        for offset in range(0, size, 8 * MIB):
            f.seek(offset)
            f.write(os.urandom(4 * MIB))


class Api:
    def __init__(self, url: str, password: str) -> None:
        self.url = url.rstrip("/") + "/jsonrpc"
        self.session = self.raw("session.login_with_password", ["root", password, "1.0", "b"])

    def raw(self, method: str, params: list[Any]) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1})
        req = urllib.request.Request(self.url, body.encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as resp:
            doc = json.loads(resp.read())
        if "error" in doc:
            raise RuntimeError(doc["error"])
        return doc["result"]

    def call(self, method: str, *args: Any) -> Any:
        return self.raw(method, [self.session, *args])

    def new_vdi(self, size: int) -> str:
        pool = self.call("pool.get_all")[0]
        sr = self.call("pool.get_default_SR", pool)
        record = {
            "name_label": "bench", "SR": sr, "virtual_size": str(size), "type": "user",
            "sharable": False, "read_only": False, "other_config": {}, "name_description": "",
        }  # fmt: skip
        return str(self.call("VDI.create", record))


def timed(cmd: list[str]) -> float:
    """Seconds ``cmd`` takes, after flushing dirty pages (so earlier writes do not count)."""
    os.sync()
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def curl(port: int, endpoint: str, query: dict[str, str], *, upload: Path | None = None,
         out: Path | None = None) -> float:  # fmt: skip
    url = f"http://127.0.0.1:{port}/{endpoint}?{urllib.parse.urlencode(query)}"
    cmd = ["curl", "-sS", "--fail", "-o", str(out or "/dev/null"), url]
    if upload is not None:
        cmd += ["-T", str(upload), "-H", "Expect:"]
    return timed(cmd)


def sparse_download(port: int, endpoint: str, query: dict[str, str], out: Path) -> float:
    """Seconds to GET ``endpoint`` into ``out`` as qemu-img writes raw files: sparse.

    A small streaming client (http.client): 1 MiB at a time, all-zero pieces become holes
    (a seek), and the file is cut to the body's length at the end.
    """
    os.sync()
    t = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", f"/{endpoint}?{urllib.parse.urlencode(query)}")
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"{endpoint}: HTTP {resp.status}")
    buf = memoryview(bytearray(MIB))
    zeros = bytes(MIB)
    with open(out, "wb") as f:
        while n := resp.readinto(buf):
            if zeros.startswith(buf[:n]):
                f.seek(n, os.SEEK_CUR)
            else:
                f.write(buf[:n])
        f.truncate()
    conn.close()
    return time.perf_counter() - t


def qemu(*args: str, durable: bool = False) -> float:
    """Seconds of ``qemu-img convert``; with ``durable``, until its output is on disk.

    xenstack answers an import only once the disk is fsynced (an acknowledged write survives
    a crash); qemu-img's default cache mode does not flush, so the like-for-like baseline of
    an import is the conversion plus an fsync of what it wrote.
    """
    took = timed(["qemu-img", "convert", *args])
    if not durable:
        return took
    t = time.perf_counter()
    fd = os.open(args[-1], os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return took + time.perf_counter() - t


Row = tuple[str, float, float, float | None]


def transfers(api: Api, port: int, work: Path, size: int) -> list[Row]:
    raw = work / "source.raw"
    make_source(raw, size)
    vhd = work / "source.vhd"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o",
                    "subformat=dynamic", str(raw), str(vhd)], check=True)  # fmt: skip
    info = subprocess.run(["qemu-img", "info", "--output", "json", str(vhd)],
                          check=True, capture_output=True, text=True).stdout  # fmt: skip
    vhd_size = max(size, int(json.loads(info)["virtual-size"]))  # qemu rounds to CHS geometry
    rows = []
    for fmt, src in (("raw", raw), ("vhd", vhd)):
        vdi = api.new_vdi(size if fmt == "raw" else vhd_size)
        q = {"session_id": api.session, "vdi": vdi, "format": fmt}
        ours = curl(port, "import_raw_vdi", q, upload=src)
        theirs = qemu("-f", "raw" if fmt == "raw" else "vpc", "-O", "vpc", "-o",
                      "subformat=dynamic", str(src), str(work / f"q-import-{fmt}.vhd"),
                      durable=True)  # fmt: skip
        rows.append((f"import {fmt}", ours, theirs, None))
        vdi_file = work / f"q-import-{fmt}.vhd"
        if fmt == "raw":  # sparse output, as qemu-img's
            ours = sparse_download(port, "export_raw_vdi", q, work / f"export.{fmt}")
        else:
            ours = curl(port, "export_raw_vdi", q, out=work / f"export.{fmt}")
        out_args = ["-O", "raw"] if fmt == "raw" else ["-O", "vpc", "-o", "subformat=dynamic"]
        theirs = qemu("-f", "vpc", *out_args, str(vdi_file), str(work / f"q-export.{fmt}"))
        to_null = curl(port, "export_raw_vdi", q)
        rows.append((f"export {fmt}", ours, theirs, to_null))
        for name in (f"export.{fmt}", f"q-export.{fmt}", f"q-import-{fmt}.vhd"):
            (work / name).unlink()
        api.call("VDI.destroy", vdi)
    return rows


def clone_times(api: Api) -> dict[str, float]:
    results = {}
    for label, size in (("2040 GiB", 2040 * GIB), ("1 GiB", GIB)):
        vdi = api.new_vdi(size)
        for method in ("VDI.clone", "VDI.snapshot"):
            samples = []
            for _ in range(15):
                t = time.perf_counter()
                api.call(method, vdi, {})
                samples.append(time.perf_counter() - t)
            results[f"{method} {label}"] = statistics.median(samples) * 1000
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-gib", type=float, default=2.0)
    args = parser.parse_args()
    size = int(args.size_gib * GIB) // (2 * MIB) * (2 * MIB)
    with tempfile.TemporaryDirectory(prefix="bench-transfer-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        with server_process(work / "state") as server:
            api = Api(server.url, server.password)
            rows = transfers(api, server.port, work, size)
            clones = clone_times(api)
    print(f"disk: {size / GIB:.1f} GiB, half full of random data")
    print("ratio = qemu-img time / xenstack time (>= 0.8 is the target); exports also timed")
    print("with curl writing to /dev/null (the server alone). Clients: curl, except for the")
    print("raw export: a streaming http.client client writing a sparse file, like qemu-img.")
    print("Imports are acknowledged once fsynced, so their qemu-img baseline includes an fsync")
    print("of its output; exports are compared without (neither side syncs the client's file).")
    head = f"{'operation':<12} {'xenstack s':>10} {'qemu-img s':>10} {'MiB/s':>8} {'ratio':>6}"
    print(head + f" {'to /dev/null s':>15}")
    for name, ours, theirs, to_null in rows:
        rate = size / MIB / ours
        null = f"{to_null:15.2f}" if to_null is not None else ""
        print(f"{name:<12} {ours:10.2f} {theirs:10.2f} {rate:8.0f} {theirs / ours:6.2f} {null}")
    print("constant-time clone (median of 15, JSON-RPC round trip, ms):")
    for name, ms in clones.items():
        print(f"  {name:<22} {ms:7.2f}")


if __name__ == "__main__":
    main()
