"""The machine's facts (memory, CPUs) and whether KVM works here.

KVM is used only when a Linux kernel booted under it gets as far as looking for its root
file system within a few seconds: ``/dev/kvm`` may exist and still be unusable (nested
virtualisation whose firmware runs but whose kernels abort or hang), and then the backend
runs TCG.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import signal
import tempfile
from dataclasses import dataclass, field

KVM_PROBE_TIMEOUT = 8.0


@dataclass(frozen=True, slots=True)
class MachineFacts:
    memory_total: int  # bytes
    cpu_count: int
    cpu: dict[str, str] = field(default_factory=dict)  # host.cpu_info's keys
    flags: tuple[str, ...] = ()


def meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes."""
    out: dict[str, int] = {}
    with open("/proc/meminfo") as f:
        for line in f:
            name, _, rest = line.partition(":")
            parts = rest.split()
            if parts:
                out[name] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return out


def machine_facts() -> MachineFacts:
    cpus: list[dict[str, str]] = [{}]
    with open("/proc/cpuinfo") as f:
        for line in f:
            if not line.strip():
                if cpus[-1]:
                    cpus.append({})
                continue
            key, _, value = line.partition(":")
            cpus[-1][key.strip()] = value.strip()
    cpus = [c for c in cpus if c]
    first = cpus[0] if cpus else {}
    flags = tuple(first.get("flags", "").split())
    cpu = {
        "cpu_count": str(len(cpus) or os.cpu_count() or 1),
        "socket_count": str(len({c.get("physical id", "0") for c in cpus}) or 1),
        "vendor": first.get("vendor_id", ""),
        "speed": first.get("cpu MHz", ""),
        "modelname": first.get("model name", ""),
        "family": first.get("cpu family", ""),
        "model": first.get("model", ""),
        "stepping": first.get("stepping", ""),
        "flags": " ".join(flags),
    }
    return MachineFacts(meminfo()["MemTotal"], len(cpus) or 1, cpu, flags)


def memory_available() -> int:
    return meminfo().get("MemAvailable", 0)


def probe_kernel() -> str:
    """A Linux kernel to boot for the probe: the host's own, if one is installed."""
    kernels = sorted(glob.glob("/boot/vmlinuz-*"))
    return kernels[-1] if kernels else ""


async def probe_kvm(binary: str = "qemu-system-x86_64", timeout: float = KVM_PROBE_TIMEOUT) -> str:
    """ "kvm" if a Linux kernel booted under KVM gets as far as looking for its root file
    system within ``timeout`` seconds, else "tcg" (also when no kernel is at hand)."""
    kernel = probe_kernel()
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError:
        return "tcg"
    if not kernel:
        return "tcg"
    with tempfile.TemporaryDirectory(prefix="xenstack-kvm-") as tmp:
        log = os.path.join(tmp, "serial")
        # `timeout`: the probe ends even if the toolstack dies while it runs
        argv = [
            "timeout", "-s", "KILL", str(int(timeout) + 2),
            binary, "-accel", "kvm", "-M", "pc", "-nodefaults", "-no-user-config",
            "-display", "none", "-m", "256", "-no-reboot", "-kernel", kernel,
            "-append", "console=ttyS0 panic=-1 root=/dev/nowhere",
            "-chardev", f"file,id=ser0,path={log}", "-serial", "chardev:ser0",
        ]  # fmt: skip
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # its own group: ended with timeout's child
            )
        except OSError:
            return "tcg"
        works = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while loop.time() < deadline and proc.returncode is None:
                with contextlib.suppress(OSError), open(log, "rb") as f:
                    text = f.read()
                    if b"VFS: " in text or b"Kernel panic" in text:
                        works = True
                        break
                await asyncio.sleep(0.1)
        finally:  # cancelled too (the toolstack stopping): no probe left behind
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        return "kvm" if works else "tcg"
