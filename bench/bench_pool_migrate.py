#!/usr/bin/env python3
"""Live migration of a real guest between two member toolstacks of a pool, against bare
QEMU's migration of the same guest, measured in the same run.

    .venv/bin/python bench/bench_pool_migrate.py [--runs 5]        (root: netns, taps)

A pool of three ``xenstack serve --backend qemu`` processes (a master, members B and C, a
shared SR on real files); the test guest (128 MiB, idle at its shell) moves B -> C -> B...
with ``VM.pool_migrate`` through the master (the PyPI SDK). Bare QEMU: the same kernel,
initramfs and 128 MiB, a destination started with ``-incoming tcp:`` and ``migrate tcp:``,
both with QEMU's default migration parameters and with those xenstack sets (``TUNING``).

downtime   what QEMU's ``query-migrate`` reports for the xenstack migration: <= 50 ms
total      VM.pool_migrate's call (the destination QEMU started, the memory moved, the
           destination running, the source gone) against bare QEMU's Popen(destination) to
           the destination running: <= 1.3x (against the tuned bare QEMU, the fair one)
Medians of --runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import XenAPI
from benchlib import wait
from qemu.qmp import QMPClient

from xenstack.testing.guests import Console, guest_image_dir, install, qemu_pool, run_dir
from xenstack.xenops.qemu.handoff import TUNING


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bare_argv(guest: Path, disk: Path, tmp: Path, extra: list[str]) -> list[str]:
    return [
        "qemu-system-x86_64", "-accel", "tcg,tb-size=64", "-M", "pc", "-nodefaults",
        "-no-user-config", "-display", "none", "-m", "128",
        "-kernel", str(guest / "vmlinux"), "-initrd", str(guest / "initrd.img"),
        "-append", (guest / "cmdline").read_text().strip(),
        "-drive", f"file={disk},format=raw,if=none,id=d0",
        "-device", "virtio-blk-pci,drive=d0",
        "-chardev", f"file,id=s0,path={tmp / 'console.log'}", "-serial", "chardev:s0",
        "-qmp", f"unix:{tmp / 'qmp.sock'},server=on,wait=off", *extra,
    ]  # fmt: skip


async def _status(qmp: QMPClient) -> str:
    return str((await qmp.execute("query-status"))["status"])  # type: ignore[index]


async def bare_migration(guest: Path, tuned: bool) -> dict[str, float]:
    """One bare migration over TCP: seconds from Popen(destination) to it running, and
    QEMU's own downtime and total time (ms); ``tuned``: with the migration parameters
    xenstack sets (else QEMU's defaults)."""
    with (
        tempfile.TemporaryDirectory(prefix="xq-bare-src-") as a,
        tempfile.TemporaryDirectory(prefix="xq-bare-dst-") as b,
    ):
        src_dir, dst_dir = Path(a), Path(b)
        disk = src_dir / "disk.raw"
        shutil.copyfile(guest / "disk.raw", disk)
        src = subprocess.Popen(bare_argv(guest, disk, src_dir, []))
        dst: subprocess.Popen[bytes] | None = None
        try:
            log = src_dir / "console.log"
            wait(lambda: log.exists() and "XSG-READY" in log.read_text(errors="replace"))
            time.sleep(2.0)  # idle, as the xenstack guest is (its boot's last writes done)
            sq = QMPClient("src")
            await sq.connect(str(src_dir / "qmp.sock"))
            port = free_port()
            t0 = time.monotonic()
            dst = subprocess.Popen(
                [*bare_argv(guest, disk, dst_dir, ["-S", "-incoming", f"tcp:127.0.0.1:{port}"])]
            )
            while True:
                dq = QMPClient("dst")
                try:
                    await dq.connect(str(dst_dir / "qmp.sock"))
                    break
                except Exception:  # not listening yet
                    await asyncio.sleep(0.005)
            if tuned:
                await sq.execute("migrate-set-parameters", TUNING)
            await sq.execute("migrate", {"uri": f"tcp:127.0.0.1:{port}"})
            while True:
                status: Any = await sq.execute("query-migrate")
                if status["status"] == "completed":
                    break
                await asyncio.sleep(0.005)
            while await _status(dq) == "inmigrate":
                await asyncio.sleep(0.005)
            await dq.execute("cont")
            wall = time.monotonic() - t0
            await sq.execute("quit")
            with contextlib.suppress(Exception):
                await sq.disconnect()
            await dq.execute("quit")
            with contextlib.suppress(Exception):
                await dq.disconnect()
            return {
                "wall": wall,
                "downtime_ms": float(status.get("downtime", 0)),
                "total_ms": float(status.get("total-time", 0)),
            }
        finally:
            for proc in (src, dst):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                if proc is not None:
                    proc.wait()


def xenstack_runs(runs: int) -> list[dict[str, float]]:
    out = []
    with qemu_pool("xb", size=3) as hosts:
        _, b, c = hosts
        s = XenAPI.Session(hosts[0].url)
        s.xenapi.login_with_password("root", hosts[0].password, "1.0", "bench")
        x = s.xenapi
        vm = install(x, "bench-mover")
        uuid = x.VM.get_uuid(vm)
        here, there = b, c
        x.VM.start_on(vm, x.host.get_by_uuid(here.host_uuid), False, False)
        con = Console(run_dir(here.state_dir, uuid))
        con.wait_for("XSG-READY")
        con.run_command("echo up")
        time.sleep(2.0)  # idle
        try:
            for _ in range(runs):
                target = x.host.get_by_uuid(there.host_uuid)
                t0 = time.monotonic()
                x.VM.pool_migrate(vm, target, {"live": "true"})
                wall = time.monotonic() - t0
                stats = json.loads((run_dir(there.state_dir, uuid) / "migration.json").read_text())
                out.append({"wall": wall, **stats})
                print(f"  xenstack: {wall:.3f} s, downtime {stats['downtime_ms']:.0f} ms",
                      flush=True)  # fmt: skip
                here, there = there, here
                wait(lambda h=there: not run_dir(h.state_dir, uuid).exists())
                time.sleep(1.0)
        finally:
            x.VM.hard_shutdown(vm)
            s.xenapi.session.logout()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    guest = guest_image_dir()
    ours = xenstack_runs(args.runs)
    bare: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for _ in range(args.runs):
        for tuned in (False, True):
            bare[tuned].append(asyncio.run(bare_migration(guest, tuned)))
            row = bare[tuned][-1]
            print(f"  bare{' tuned' if tuned else ''}: {row['wall']:.3f} s,"
                  f" downtime {row['downtime_ms']:.0f} ms")  # fmt: skip

    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    print(f"load average {os.getloadavg()[0]:.1f}; medians of {args.runs}")
    down = med(ours, "downtime_ms")
    print(f"downtime  xenstack {down:.0f} ms (bare QEMU: defaults"
          f" {med(bare[False], 'downtime_ms'):.0f} ms, tuned alike"
          f" {med(bare[True], 'downtime_ms'):.0f} ms)"
          f"  target <= 50 ms: {'ok' if down <= 50 else 'MISSED'}")  # fmt: skip
    wall = med(ours, "wall")
    for tuned, what in ((True, "tuned alike"), (False, "QEMU's defaults")):
        ratio = wall / med(bare[tuned], "wall")
        print(f"total     VM.pool_migrate {wall:.3f} s  bare ({what})"
              f" {med(bare[tuned], 'wall'):.3f} s  ratio {ratio:.2f}x"
              f"  target <= 1.3x: {'ok' if ratio <= 1.3 else 'MISSED'}")  # fmt: skip
    print(f"          QEMU's total-time: xenstack {med(ours, 'total_ms'):.0f} ms, bare"
          f" {med(bare[True], 'total_ms'):.0f} ms tuned, {med(bare[False], 'total_ms'):.0f}"
          " ms defaults")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
