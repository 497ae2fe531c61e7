"""A journal of when each domain ran where: the evidence that no VM ever ran twice.

:class:`TimelineBackend` wraps a host's own backend and appends one JSON line per change of
a domain's life to a file (``xenstack serve --domain-log FILE``): ``start`` when a domain is
built (start, resume, reboot, migrate in, adopted after a restart), ``stop`` when it is gone
(shutdown, suspend, reset, fenced, migrate out, the toolstack stopping with the simulator).
Lines are small and written with O_APPEND, so several hosts may share one file.
:func:`intervals` reads them back as run intervals per VM and :func:`overlaps` finds any VM
that ran on two hosts at once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from ...xenops.delegate import DelegatingBackend
from ...xenops.interface import Backend, DiskSpec, DomainInfo, DomainSpec


class TimelineBackend(DelegatingBackend):
    def __init__(self, local: Backend, path: Path, label: str = "") -> None:
        super().__init__(local)
        self.path = path
        self.label = label or str(os.getpid())

    def record(self, event: str, vm: str, host: str) -> None:
        line = orjson.dumps(
            {"t": time.time(), "event": event, "vm": vm, "host": host, "by": self.label}
        )
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line + b"\n")
        finally:
            os.close(fd)

    def started(self, info: DomainInfo) -> DomainInfo:
        self.record("start", info.vm_id, info.host_id)
        return info

    def stopped(self, vm: str) -> None:
        info = self.local.vm_info(vm)
        if info is not None:
            self.record("stop", vm, info.host_id)

    def stop_all(self, why: str = "stop") -> None:
        """Every domain here ends (fenced, or the simulator's process stops)."""
        for host in self.local.host_ids():
            for dom in self.local.host_domains(host):
                self.record(why, dom.vm_id, dom.host_id)

    # what changes where a domain runs; everything else is DelegatingBackend's
    async def vm_start(self, host_id: str, spec: DomainSpec, paused: bool) -> DomainInfo:
        return self.started(await self.local.vm_start(host_id, spec, paused))

    async def vm_shutdown(self, vm_id: str, clean: bool) -> None:
        info = self.local.vm_info(vm_id)
        await self.local.vm_shutdown(vm_id, clean)
        if info is not None:
            self.record("stop", vm_id, info.host_id)

    async def vm_suspend(self, vm_id: str, image: DiskSpec | None = None) -> int:
        info = self.local.vm_info(vm_id)
        size = await self.local.vm_suspend(vm_id, image)
        if info is not None:
            self.record("stop", vm_id, info.host_id)
        return size

    async def vm_resume(
        self,
        host_id: str,
        vm_id: str,
        paused: bool,
        spec: DomainSpec | None = None,
        image: DiskSpec | None = None,
    ) -> DomainInfo:
        return self.started(await self.local.vm_resume(host_id, vm_id, paused, spec, image))

    async def vm_migrate(
        self, vm_id: str, host_id: str, spec: DomainSpec | None = None
    ) -> DomainInfo:
        before = self.local.vm_info(vm_id)
        info = await self.local.vm_migrate(vm_id, host_id, spec)
        if before is not None and before.host_id != info.host_id:
            self.record("stop", vm_id, before.host_id)
            self.record("start", vm_id, info.host_id)
        return info

    async def vm_migrate_send(self, vm_id: str, to: str) -> dict[str, object]:
        before = self.local.vm_info(vm_id)
        state = await self.local.vm_migrate_send(vm_id, to)
        if before is not None:
            self.record("stop", vm_id, before.host_id)
        return state

    async def vm_migrate_finish(self, vm_id: str, state: dict[str, object]) -> DomainInfo:
        return self.started(await self.local.vm_migrate_finish(vm_id, state))

    def vm_reset(self, vm_id: str) -> None:
        self.stopped(vm_id)
        self.local.vm_reset(vm_id)


Interval = tuple[str, float, float]  # host, start, end


def read(paths: Iterable[Path]) -> list[dict[str, Any]]:
    events = []
    for path in paths:
        if path.exists():
            events += [orjson.loads(line) for line in path.read_bytes().splitlines() if line]
    return sorted(events, key=lambda e: float(e["t"]))


def intervals(
    events: list[dict[str, Any]], ends: dict[str, float] | None = None, now: float | None = None
) -> dict[str, list[Interval]]:
    """Run intervals per VM. ``ends`` gives, per ``by`` label (a host's process), when it
    was powered off (killed): its open intervals end there; others end ``now``."""
    ends = ends or {}
    now = time.time() if now is None else now
    open_: dict[tuple[str, str], tuple[float, str]] = {}  # (vm, host) -> (start, by)
    found: dict[str, list[Interval]] = {}
    for e in events:
        key = (e["vm"], e["host"])
        if e["event"] == "start":
            open_.setdefault(key, (float(e["t"]), e["by"]))
        elif key in open_:
            began, _ = open_.pop(key)
            found.setdefault(e["vm"], []).append((e["host"], began, float(e["t"])))
    for (vm, host), (began, by) in open_.items():
        found.setdefault(vm, []).append((host, began, ends.get(by, now)))
    return found


def overlaps(runs: dict[str, list[Interval]]) -> list[tuple[str, Interval, Interval]]:
    """Every pair of run intervals of one VM on two hosts that overlap in time."""
    bad = []
    for vm, spans in runs.items():
        spans = sorted(spans, key=lambda s: s[1])
        for i, a in enumerate(spans):
            for b in spans[i + 1 :]:
                if b[1] >= a[2]:
                    break
                if a[0] != b[0]:
                    bad.append((vm, a, b))
    return bad
