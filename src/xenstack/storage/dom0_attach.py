"""Dom0 block devices: a VDI opened in the control domain as a loop device.

XenServer's dom0 reads and writes a VDI plugged into it through ``/dev/<VBD.device>``.
xenstack has no blkback, so the device is built from what this machine has:

    xenstack's NBD export of the VDI (the one writer of its chain)
      <- ``qemu-storage-daemon``: an NBD client, exported over FUSE as a regular file
      <- ``losetup``: that file as ``/dev/loopN`` (read-only for a read-only VBD)

Each attachment lives in ``DIR/<key>/`` (0700): the FUSE mount point ``disk`` and
``record.json`` (the daemon's pid, the loop device). Detaching removes the loop device,
stops the daemon (which unmounts its export and flushes) and the directory. What a killed
toolstack left behind is found from those records and removed by :meth:`Dom0Disks.cleanup`;
a loop device is only ever detached when its backing file is one of these mount points, and
a daemon only killed when its command line names one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import time
from pathlib import Path

log = logging.getLogger(__name__)

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
# seconds the daemon retries a lost NBD server before I/O errors: an export restarted on a
# new chain (VDI.snapshot of a plugged VDI) only stalls the device, as it does a guest's disk
NBD_RECONNECT_DELAY = 30


class Dom0AttachError(Exception):
    """The device could not be made; ``reason`` says why (for the caller's XAPI error)."""

    def __init__(self, reason: str, *, timeout: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timeout = timeout


def missing_tools(qsd: str) -> str:
    """Why dom0 block devices cannot be made here with the daemon ``qsd`` ("" when they
    can)."""
    if os.geteuid() != 0:
        return "dom0 block devices need root (loop devices)"
    if not (os.path.isfile(qsd) and os.access(qsd, os.X_OK)):
        return "dom0 block devices need qemu-storage-daemon"
    if not shutil.which("losetup"):
        return "dom0 block devices need losetup"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "dom0 block devices need /dev/fuse"
    if not os.path.exists("/dev/loop-control"):
        return "dom0 block devices need loop devices (/dev/loop-control)"
    return ""


async def _run(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise Dom0AttachError(f"{argv[0]}: {err.decode(errors='replace').strip()}")
    return out.decode().strip()


def _loop_backing(device: str) -> str:
    """The file ``/dev/<device>`` (a loop device) is attached to, or ""."""
    try:
        return Path(f"/sys/block/{device}/loop/backing_file").read_text().strip()
    except OSError:
        return ""


def _alive_with(pid: int, needle: str) -> bool:
    """Whether ``pid`` runs (not a zombie) with ``needle`` in its command line."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and needle in cmdline


def _mounted(path: Path) -> bool:
    """Whether something is mounted on ``path`` (a mount point of this mount namespace,
    answering or not)."""
    target = str(path).replace("\\", "\\134").replace(" ", "\\040")
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return False
    return any(line.split()[4] == target for line in lines if len(line.split()) > 4)


class Dom0Disks:
    """The dom0 block devices of one toolstack, under ``directory``."""

    def __init__(self, directory: Path, qsd: str | None = None) -> None:
        self.directory = directory
        self.qsd = qsd or shutil.which("qemu-storage-daemon") or ""
        self._procs: dict[str, asyncio.subprocess.Process] = {}

    def missing(self) -> str:
        """Why this machine cannot make dom0 block devices ("" when it can)."""
        return missing_tools(self.qsd)

    def _dir(self, key: str) -> Path:
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"bad attachment key {key!r}")
        return self.directory / key

    def attached(self) -> list[str]:
        """The keys of the attachments on record (live or left by a killed toolstack)."""
        if not self.directory.is_dir():
            return []
        return sorted(p.name for p in self.directory.iterdir() if (p / "record.json").exists())

    def device(self, key: str) -> str:
        """The loop device (``loopN``) of attachment ``key``, or ""."""
        record = self._record(key)
        return str(record.get("device", ""))

    def _record(self, key: str) -> dict[str, object]:
        path = self._dir(key) / "record.json"
        try:
            value = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    def _save(self, key: str, record: dict[str, object]) -> None:
        path = self._dir(key) / "record.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)

    def _prepare(self, key: str) -> Path:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        where = self._dir(key)
        try:
            where.mkdir(mode=0o700)
        except FileExistsError:
            raise Dom0AttachError(f"{key} is attached already") from None
        mountpoint = where / "disk"
        mountpoint.touch(mode=0o600)
        self._save(key, {"mountpoint": str(mountpoint)})
        return mountpoint

    async def attach(self, key: str, nbd_socket: str, export: str, writable: bool) -> str:
        """A loop device reading (and, when ``writable``, writing) the NBD export; its name.

        Raises :class:`Dom0AttachError` with nothing left behind when it cannot."""
        if reason := self.missing():
            raise Dom0AttachError(reason)
        mountpoint = self._prepare(key)
        try:
            pid = await self._start_daemon(key, mountpoint, nbd_socket, export, writable)
            self._save(key, {"mountpoint": str(mountpoint), "pid": pid})
            device = await self._losetup(mountpoint, writable)
            self._save(key, {"mountpoint": str(mountpoint), "pid": pid, "device": device})
        except BaseException:
            await self.detach(key)
            raise
        return device

    async def attach_file(self, key: str, path: str) -> str:
        """A read-only loop device on the file ``path`` (an ISO); its name."""
        if reason := self.missing():
            raise Dom0AttachError(reason)
        self._prepare(key)
        try:
            device = await self._losetup(Path(path), False)
            self._save(key, {"file": path, "device": device})
        except BaseException:
            await self.detach(key)
            raise
        return device

    async def _start_daemon(
        self, key: str, mountpoint: Path, nbd_socket: str, export: str, writable: bool
    ) -> int:
        node = {
            "driver": "nbd",
            "node-name": "vdi",
            "read-only": not writable,
            "server": {"type": "unix", "path": nbd_socket},
            "export": export,
            "reconnect-delay": NBD_RECONNECT_DELAY,
        }
        fuse = {
            "type": "fuse",
            "id": "dom0",
            "node-name": "vdi",
            "mountpoint": str(mountpoint),
            "writable": writable,
        }
        proc = await asyncio.create_subprocess_exec(
            self.qsd,
            "--blockdev",
            json.dumps(node),
            "--export",
            json.dumps(fuse),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # the toolstack's signals are not the device's
        )
        self._procs[key] = proc
        deadline = time.monotonic() + READY_TIMEOUT
        while not _mounted(mountpoint):
            if proc.returncode is not None or time.monotonic() > deadline:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 0.005)
        if proc.returncode is not None:
            err = await proc.stderr.read() if proc.stderr else b""
            raise Dom0AttachError(f"qemu-storage-daemon: {err.decode(errors='replace').strip()}")
        if not _mounted(mountpoint):
            raise Dom0AttachError("qemu-storage-daemon's FUSE export did not appear", timeout=True)
        return proc.pid

    async def _losetup(self, backing: Path, writable: bool) -> str:
        argv = ["losetup", "--find", "--show", *([] if writable else ["--read-only"])]
        path = await _run(*argv, str(backing))
        return os.path.basename(path)

    async def detach(self, key: str) -> None:
        """Remove attachment ``key``: its loop device, its daemon, its directory.

        A live attachment of this toolstack loses its loop device first, then its daemon
        stops (flushing into the export). A daemon a killed toolstack left has lost its NBD
        server, so it can flush nothing: it is killed first (else closing the loop would
        wait on its reconnection), then the loop device and the mount are removed."""
        record = self._record(key)
        mountpoint = str(record.get("mountpoint", ""))
        proc = self._procs.pop(key, None)
        if proc is None:
            self._kill_leftover(record.get("pid"), mountpoint)
        await self._detach_loop(record, mountpoint or str(record.get("file", "")))
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if mountpoint and _mounted(Path(mountpoint)):  # the daemon could not unmount it
            with contextlib.suppress(Dom0AttachError):
                await _run("umount", "--lazy", mountpoint)
        with contextlib.suppress(ValueError):
            shutil.rmtree(self._dir(key), ignore_errors=True)

    async def _detach_loop(self, record: dict[str, object], backing: str) -> None:
        device = str(record.get("device", ""))
        if device and backing and _loop_backing(device) == backing:
            try:
                await _run("losetup", "--detach", f"/dev/{device}")
            except Dom0AttachError as exc:
                log.warning("dom0 device %s: %s", device, exc.reason)

    @staticmethod
    def _kill_leftover(pid: object, mountpoint: str) -> None:
        if isinstance(pid, int) and mountpoint and _alive_with(pid, mountpoint):
            os.kill(pid, signal.SIGKILL)  # not our child: its zombie is init's to reap

    async def detach_all(self) -> list[str]:
        """Remove every attachment on record (at stop, or what a killed toolstack left at
        start); the keys removed."""
        keys = self.attached()
        for key in keys:
            await self.detach(key)
        return keys
