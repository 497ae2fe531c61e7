#!/usr/bin/env python3
"""Real guests: xenstack's QEMU backend against bare QEMU, measured in the same run.

    .venv/bin/python bench/bench_guest.py [--runs 3]        (root: netns, taps)

boot       VM.start to the agent's IP in VM_guest_metrics (SDK, `xenstack serve --backend
           qemu`), against a bare qemu-system-x86_64 of the same kernel, initramfs and disk (a
           raw file) on a tap of the same bridge, to its DHCP lease on the console: <= 1.15x
start      VM.start's call-to-Running time minus bare QEMU's own start (-S -daemonize to its
           parent's exit): <= 100 ms
suspend    VM.suspend (memory into a suspend VDI over NBD) and VM.resume, against bare QEMU's
           `migrate exec:cat > FILE` and `-incoming exec:cat FILE`: <= 1.5x each
The live-migration downtime is printed by tests/xenops/qemu/test_guest_migrate.py.
Medians of --runs; at most one guest boots at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import XenAPI
from benchlib import wait
from qemu.qmp import QMPClient

from xenstack.testing.guests import guest_image_dir, install, qemu_host, stop_guests
from xenstack.xenops.interface import NicSpec
from xenstack.xenops.qemu.bridge import LinuxBridgeHooks


def bare_argv(guest: Path, disk: Path, tmp: Path, tap: str, extra: list[str]) -> list[str]:
    return [
        "qemu-system-x86_64", "-accel", "tcg,tb-size=64", "-M", "pc", "-nodefaults",
        "-no-user-config", "-display", "none", "-m", "128",
        "-kernel", str(guest / "vmlinux"), "-initrd", str(guest / "initrd.img"),
        "-append", (guest / "cmdline").read_text().strip(),
        "-drive", f"file={disk},format=raw,if=none,id=d0", "-device", "virtio-blk-pci,drive=d0",
        "-chardev", f"file,id=s0,path={tmp / 'console.log'}", "-serial", "chardev:s0",
        "-qmp", f"unix:{tmp / 'qmp.sock'},server=on,wait=off", *extra,
    ] + ([
        "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
        "-device", "virtio-net-pci,netdev=n0,mac=02:00:00:77:00:01",
    ] if tap else [])  # fmt: skip


def bare_boot(netns: str, guest: Path) -> float:
    """Seconds from Popen(qemu) to the DHCP lease printed on the console."""
    with tempfile.TemporaryDirectory(prefix="xq-bare-") as d:
        tmp = Path(d)
        disk = tmp / "disk.raw"
        shutil.copyfile(guest / "disk.raw", disk)
        hooks = LinuxBridgeHooks(netns)
        nic = NicSpec("0", bridge="xenbr0")
        asyncio.run(hooks.vif_plug("bare", 900, nic, "xqbare0"))
        t0 = time.monotonic()
        proc = subprocess.Popen(["ip", "netns", "exec", netns,
                                 *bare_argv(guest, disk, tmp, "xqbare0", [])])  # fmt: skip
        try:
            log = tmp / "console.log"
            wait(lambda: log.exists() and "XSG-DHCP" in log.read_text(errors="replace"))
            return time.monotonic() - t0
        finally:
            proc.kill()
            proc.wait()
            asyncio.run(hooks.vif_unplug("bare", 900, nic, "xqbare0"))


def bare_start() -> float:
    """QEMU's own start: -S -daemonize until the parent exits (the domain is built)."""
    guest = guest_image_dir()
    with tempfile.TemporaryDirectory(prefix="xq-bare-") as d:
        tmp = Path(d)
        argv = [
            "qemu-system-x86_64", "-S", "-daemonize", "-pidfile", str(tmp / "pid"),
            "-accel", "tcg,tb-size=64", "-M", "pc", "-nodefaults", "-no-user-config",
            "-display", "none", "-m", "128", "-kernel", str(guest / "vmlinux"),
            "-initrd", str(guest / "initrd.img"),
        ]  # fmt: skip
        t0 = time.monotonic()
        subprocess.run(argv, check=True)
        took = time.monotonic() - t0
        os.kill(int((tmp / "pid").read_text()), 9)
        return took


async def bare_suspend_resume(guest: Path) -> tuple[float, float]:
    """Bare QEMU: stop + migrate exec:cat > F, then -incoming exec:cat F to running."""
    with tempfile.TemporaryDirectory(prefix="xq-bare-") as d:
        tmp = Path(d)
        disk = tmp / "disk.raw"
        shutil.copyfile(guest / "disk.raw", disk)
        argv = bare_argv(guest, disk, tmp, "", [])
        proc = subprocess.Popen(argv)
        log = tmp / "console.log"
        wait(lambda: log.exists() and "XSG-READY" in log.read_text(errors="replace"))
        qmp = QMPClient("bare")
        await qmp.connect(str(tmp / "qmp.sock"))
        image = tmp / "image"
        t0 = time.monotonic()
        await qmp.execute("stop")
        await qmp.execute("migrate", {"uri": f"exec:cat > {image}"})
        while (await qmp.execute("query-migrate"))["status"] != "completed":  # type: ignore[index]
            await asyncio.sleep(0.005)
        await qmp.execute("quit")
        with contextlib.suppress(Exception):  # QEMU closes the socket as it quits
            await qmp.disconnect()
        proc.wait()
        suspend = time.monotonic() - t0
        (tmp / "qmp.sock").unlink(missing_ok=True)
        t0 = time.monotonic()
        proc = subprocess.Popen([*argv, "-S", "-incoming", f"exec:cat {image}"])
        qmp = QMPClient("bare2")
        wait(lambda: (tmp / "qmp.sock").exists())
        await qmp.connect(str(tmp / "qmp.sock"))
        while (await qmp.execute("query-status"))["status"] == "inmigrate":  # type: ignore[index]
            await asyncio.sleep(0.005)
        await qmp.execute("cont")
        resume = time.monotonic() - t0
        await qmp.execute("quit")
        with contextlib.suppress(Exception):  # QEMU closes the socket as it quits
            await qmp.disconnect()
        proc.wait()
        return suspend, resume


PHASES = (
    ("call", "build", "API to backend (checks, placement, NBD exports)"),
    ("build", "launch", "taps, run directory, argv"),
    ("launch", "launched", "QEMU's own start (-S -daemonize)"),
    ("launched", "attached", "QMP and agent channel"),
    ("attached", "cont", "incoming/balloon/cont"),
    ("attached", "handed", "  the image's pipe to QEMU, migrate-incoming"),
    ("handed", "incoming_done", "  QEMU loads the image"),
    ("incoming_done", "image_done", "  the helper's exit"),
    ("image_done", "cont", "  balloon, cont"),
    ("cont", "done", "back to the API (database, XenStore, consoles)"),
)


def phases(run: Path, called: float, done: float) -> dict[str, float]:
    """The build's marks (the backend's timings.json) as seconds per phase."""
    import json

    marks = {**json.loads((run / "timings.json").read_text()), "call": called, "done": done}
    return {a: marks[b] - marks[a] for a, b, _ in PHASES if a in marks and b in marks}


def xenstack_runs(runs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"boot": [], "start": [], "suspend": [], "resume": []}
    with qemu_host("xq") as host:
        s = XenAPI.Session(host.url)
        s.xenapi.login_with_password("root", host.password, "1.0", "bench")
        x = s.xenapi
        vm = install(x, "xq-bench")
        x.VM.start(vm, False, False)  # the first start probes KVM: not timed
        x.VM.hard_shutdown(vm)
        from xenstack.testing.guests import run_dir

        run = run_dir(host.state_dir, x.VM.get_uuid(vm))
        for _ in range(runs):
            t0, w0 = time.monotonic(), time.time()
            x.VM.start(vm, False, False)
            out["start"].append(time.monotonic() - t0)
            for name, took in phases(run, w0, time.time()).items():
                out.setdefault(f"start.{name}", []).append(took)

            def ip() -> str:
                gm = x.VM.get_guest_metrics(vm)
                return (
                    ""
                    if gm == "OpaqueRef:NULL"
                    else x.VM_guest_metrics.get_networks(gm).get("0/ip", "")
                )

            wait(ip)
            out["boot"].append(time.monotonic() - t0)
            t0 = time.monotonic()
            x.VM.suspend(vm)
            out["suspend"].append(time.monotonic() - t0)
            t0, w0 = time.monotonic(), time.time()
            x.VM.resume(vm, False, False)
            out["resume"].append(time.monotonic() - t0)
            for name, took in phases(run, w0, time.time()).items():
                out.setdefault(f"resume.{name}", []).append(took)
            x.VM.hard_shutdown(vm)
        netns = host.network.netns
        out["bare_boot"] = [bare_boot(netns, guest_image_dir()) for _ in range(runs)]
        s.xenapi.session.logout()
        stop_guests(host.state_dir)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    guest = guest_image_dir()
    figures = xenstack_runs(args.runs)
    print("xenstack:", {k: [round(v, 3) for v in vs] for k, vs in figures.items()}, flush=True)
    bare_start_s = statistics.median(bare_start() for _ in range(args.runs))
    bare = [asyncio.run(bare_suspend_resume(guest)) for _ in range(args.runs)]
    med = {k: statistics.median(v) for k, v in figures.items()}
    bs, br = statistics.median(b[0] for b in bare), statistics.median(b[1] for b in bare)
    print(f"load average {os.getloadavg()[0]:.1f}; medians of {args.runs}")
    print(
        f"boot     xenstack {med['boot']:.2f} s  bare {med['bare_boot']:.2f} s  "
        f"ratio {med['boot'] / med['bare_boot']:.2f}x (target <= 1.15x)"
    )
    print(
        f"start    VM.start {med['start'] * 1000:.0f} ms"
        f"  bare qemu start {bare_start_s * 1000:.0f} ms"
        f"  overhead {(med['start'] - bare_start_s) * 1000:.0f} ms (target <= 100 ms)"
    )
    for op in ("start", "resume"):
        for a, _, what in PHASES:
            if f"{op}.{a}" in med:
                print(f"  {op:6} {what:52} {med[f'{op}.{a}'] * 1000:7.0f} ms")
    own = med["start"] - med.get("start.launch", 0.0)
    print(f"start    overhead without QEMU's own start, measured inside: {own * 1000:.0f} ms")
    print(
        f"suspend  xenstack {med['suspend']:.2f} s  bare {bs:.2f} s"
        f"  ratio {med['suspend'] / bs:.2f}x"
        f" (target <= 1.5x)"
    )
    print(
        f"resume   xenstack {med['resume']:.2f} s  bare {br:.2f} s  ratio {med['resume'] / br:.2f}x"
        f" (target <= 1.5x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
