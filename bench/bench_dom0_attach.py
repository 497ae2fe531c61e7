#!/usr/bin/env python3
"""Dom0 attach time: ``VBD.plug`` on the control domain until ``/dev/<device>`` reads.

    sudo .venv/bin/python bench/bench_dom0_attach.py [--runs 20]

plug    through the XenAPI SDK against a simulated pool with file storage (in this process's
        thread): ``VBD.plug``, ``VBD.get_device``, then the first 4 KiB read from the device
        (``O_DIRECT``, so the bytes come through the whole chain: loop, FUSE,
        qemu-storage-daemon, NBD, the VHD). ``VBD.unplug`` is timed apart.
losetup the baseline, in the same run: ``losetup --find --show`` of a raw file of the same
        size and the same first read, then ``losetup --detach``.

Prints p50/p90 of each and the plug's ratio to the baseline. Needs root,
``qemu-storage-daemon`` and ``/dev/fuse``.
"""

from __future__ import annotations

import argparse
import mmap
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import XenAPI

from xenstack.testing.pool import simulated_pool

SIZE = 64 << 20


def first_block(path: str) -> None:
    buf = mmap.mmap(-1, 4096)  # page-aligned, as O_DIRECT wants
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        assert os.readv(fd, [buf]) == 4096
    finally:
        os.close(fd)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_losetup(top: Path, runs: int) -> list[float]:
    raw = top / "baseline.raw"
    with open(raw, "wb") as f:
        f.truncate(SIZE)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        dev = subprocess.run(
            ["losetup", "--find", "--show", str(raw)], capture_output=True, text=True, check=True
        ).stdout.strip()
        first_block(dev)
        times.append(time.perf_counter() - start)
        subprocess.run(["losetup", "--detach", dev], check=True)
    return times


def bench_plug(top: Path, runs: int) -> tuple[list[float], list[float]]:
    plugs, unplugs = [], []
    with simulated_pool(top / "state") as pool:
        s = XenAPI.Session(pool.url)
        s.xenapi.login_with_password("root", pool.password, "1.0", "bench-dom0")
        x = s.xenapi
        dom0 = x.host.get_control_domain(x.session.get_this_host(s._session))
        sr = x.pool.get_default_SR(x.pool.get_all()[0])
        vdi = x.VDI.create(
            {"name_label": "bench", "name_description": "", "SR": sr,
             "virtual_size": str(SIZE), "type": "user", "sharable": False,
             "read_only": False, "other_config": {}}
        )  # fmt: skip
        vbd = x.VBD.create(
            {"VM": dom0, "VDI": vdi, "userdevice": "autodetect", "bootable": False,
             "mode": "RW", "type": "Disk", "unpluggable": True, "empty": False,
             "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}}
        )  # fmt: skip
        for _ in range(runs):
            start = time.perf_counter()
            x.VBD.plug(vbd)
            first_block(f"/dev/{x.VBD.get_device(vbd)}")
            plugs.append(time.perf_counter() - start)
            start = time.perf_counter()
            x.VBD.unplug(vbd)
            unplugs.append(time.perf_counter() - start)
        x.VBD.destroy(vbd)
        x.VDI.destroy(vdi)
    return plugs, unplugs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    top = Path(tempfile.mkdtemp(prefix="d0-bench-", dir="/tmp"))
    try:
        base = bench_losetup(top, args.runs)
        plugs, unplugs = bench_plug(top, args.runs)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    load = os.getloadavg()[0]
    print(f"load {load:.1f}, {args.runs} runs, {SIZE >> 20} MiB disk")
    for name, values in (("losetup+read", base), ("VBD.plug+read", plugs), ("VBD.unplug", unplugs)):
        p50, p90 = statistics.median(values) * 1000, pct(values, 0.9) * 1000
        print(f"{name:>14}: p50 {p50:7.1f} ms  p90 {p90:7.1f} ms")
    ratio = statistics.median(plugs) / statistics.median(base)
    print(f"dom0 attach vs bare losetup (p50): {ratio:.1f}x")


if __name__ == "__main__":
    main()
