"""One running domain of the QEMU backend: its process, monitor, agent channel and record.

``domain.json`` in the run directory keeps what a restarted toolstack needs to take the
domain back: the spec it was built from, its domid, host and start time.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from ..interface import BootSpec, DiskSpec, DomainInfo, DomainSpec, DomainState, NicSpec
from .agent import GuestChannel
from .cmdline import RunDir
from .qmp import Monitor


@dataclass(slots=True)
class Domain:
    spec: DomainSpec
    host_id: str
    domid: int
    run: RunDir
    start_time: float
    pid: int = 0
    state: DomainState = "running"
    memory_actual: int = 0
    vbds: list[str] = field(default_factory=list)
    vifs: list[str] = field(default_factory=list)
    hot_cpus: list[str] = field(default_factory=list)  # ids of the vCPUs added live
    timings: dict[str, float] = field(default_factory=dict)  # the last build's marks
    monitor: Monitor | None = None
    channel: GuestChannel | None = None
    expected: bool = False  # the toolstack asked for the end it sees
    reason: str = ""  # the last SHUTDOWN event's reason
    gone: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def vm_id(self) -> str:
        return self.spec.vm_id

    def info(self) -> DomainInfo:
        spec = self.spec
        return DomainInfo(
            vm_id=spec.vm_id,
            host_id=self.host_id,
            domid=self.domid,
            state=self.state,
            domain_type=spec.domain_type,
            memory_actual=self.memory_actual or spec.memory_dynamic_max,
            memory_overhead=spec.memory_overhead,
            vcpus=spec.vcpus,
            start_time=self.start_time,
            vbds=tuple(self.vbds),
            vifs=tuple(self.vifs),
            platform=dict(spec.platform),
            vif_networks=spec.vif_networks,
            os_hint=spec.os_hint,
        )

    def save(self) -> None:
        record = {
            "spec": asdict(self.spec),
            "host_id": self.host_id,
            "domid": self.domid,
            "start_time": self.start_time,
            "vbds": self.vbds,
            "vifs": self.vifs,
            "hot_cpus": self.hot_cpus,
        }
        tmp = self.run.domain + ".tmp"
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            json.dump(record, f)
        os.replace(tmp, self.run.domain)


def _tuples(value: Any) -> tuple[tuple[str, str], ...]:
    return tuple((str(a), str(b)) for a, b in value)


def spec_from_json(raw: dict[str, Any]) -> DomainSpec:
    disks = tuple(DiskSpec(**d) for d in raw.pop("disks", []))
    nics = []
    for n in raw.pop("nics", []):
        n["other_config"] = _tuples(n.get("other_config", []))
        nics.append(NicSpec(**n))
    boot = BootSpec(**raw.pop("boot", {}))
    for key in ("vbds", "vifs"):
        raw[key] = tuple(raw.get(key, ()))
    for key in ("platform", "vif_networks", "xenstore_data"):
        raw[key] = _tuples(raw.get(key, ()))
    return DomainSpec(**raw, disks=disks, nics=tuple(nics), boot=boot)


def load(run: RunDir) -> Domain | None:
    """The domain recorded in ``run``, or None if there is no readable record."""
    try:
        with open(run.domain) as f:
            record = json.load(f)
        spec = spec_from_json(record["spec"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return Domain(
        spec=spec,
        host_id=str(record["host_id"]),
        domid=int(record["domid"]),
        run=run,
        start_time=float(record["start_time"]),
        vbds=list(record.get("vbds", [])),
        vifs=list(record.get("vifs", [])),
        hot_cpus=list(record.get("hot_cpus", [])),
    )
