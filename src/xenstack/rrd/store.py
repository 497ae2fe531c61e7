"""Every RRD a toolstack keeps, by owner (``host``, ``vm``, ``sr``) and uuid, and their files.

An RRD is made on its owner's first sample with the standard sources it reports; a source
that is not standard is archived once :meth:`RrdStore.record` asks for it. A VM's RRD is
keyed by the VM alone, so it follows the VM from host to host; ``resident`` says which host
sampled it last (what ``/rrd_updates`` of that host shows). Archives are kept, as XAPI keeps
them on the master, in ``<state>/rrd/<owner>-<uuid>.xml.gz`` (0600), written when a VM stops
being sampled, periodically and at shutdown, and read back at start.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

from .archive import Rrd
from .dump import from_xml, to_xml
from .sources import SourceDef, definition

log = logging.getLogger(__name__)

OWNERS = ("host", "vm", "sr")


class UnknownSource(Exception):
    """The owner has no data source of that name."""


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """A data source as ``get_data_sources`` lists it."""

    definition: SourceDef
    enabled: bool
    value: float


class RrdStore:
    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.rrds: dict[tuple[str, str], Rrd] = {}
        self.latest: dict[tuple[str, str], dict[str, float]] = {}  # raw values, last sample
        self.recorded: dict[tuple[str, str], set[str]] = {}
        self.resident: dict[str, str] = {}  # vm uuid -> host uuid that sampled it last

    def get(self, owner: str, uuid: str) -> Rrd | None:
        return self.rrds.get((owner, uuid))

    def update(self, owner: str, uuid: str, timestamp: float, values: dict[str, float]) -> Rrd:
        """Record a sample of ``owner`` ``uuid`` (its RRD made, and new sources added, first)."""
        key = (owner, uuid)
        self.latest[key] = values
        rrd = self.rrds.get(key)
        if rrd is None:
            rrd = self.rrds[key] = Rrd([], timestamp)
        if len(rrd.sources) != len(values) or key in self.recorded:
            self._add_sources(owner, key, rrd, values)
        if rrd.last_updated == timestamp:  # a new RRD: the counters' origin is this sample
            for source in rrd.sources:
                source.last = float(values.get(source.name, math.nan))
        rrd.update(timestamp, values)
        return rrd

    def _add_sources(
        self, owner: str, key: tuple[str, str], rrd: Rrd, values: dict[str, float]
    ) -> None:
        have = set(rrd.names())
        wanted = self.recorded.get(key, set())
        for name in values:
            if name in have:
                continue
            d = definition(owner, name)
            if d is not None and (d.standard or name in wanted):
                rrd.add_source(d.new())

    # ---- the API's view ---------------------------------------------------------------------

    def sources(self, owner: str, uuid: str) -> list[SourceInfo]:
        """Every source the owner reports or archives, as ``get_data_sources`` lists them."""
        key = (owner, uuid)
        rrd = self.rrds.get(key)
        archived = set(rrd.names()) if rrd is not None else set()
        names = list(dict.fromkeys([*(rrd.names() if rrd else []), *self.latest.get(key, {})]))
        infos = []
        for name in names:
            d = definition(owner, name)
            if d is None:
                continue
            value = rrd.latest(name) if name in archived and rrd is not None else 0.0
            infos.append(SourceInfo(d, name in archived, 0.0 if value != value else value))
        return infos

    def query(self, owner: str, uuid: str, name: str) -> float:
        """The newest 5-second average of a source; UnknownSource if it is not archived."""
        rrd = self.rrds.get((owner, uuid))
        if rrd is None or name not in rrd.names():
            raise UnknownSource(name)
        return rrd.latest(name)

    def record(self, owner: str, uuid: str, name: str) -> None:
        """Archive a source from now on; UnknownSource if the owner has none of that name."""
        key = (owner, uuid)
        if definition(owner, name) is None or (
            name not in self.latest.get(key, {}) and name not in self._names(key)
        ):
            raise UnknownSource(name)
        self.recorded.setdefault(key, set()).add(name)
        rrd = self.rrds.get(key)
        d = definition(owner, name)
        if rrd is not None and d is not None:
            rrd.add_source(d.new())

    def forget(self, owner: str, uuid: str, name: str) -> None:
        """Drop what a source's archives hold (a standard source starts again, empty)."""
        key = (owner, uuid)
        rrd = self.rrds.get(key)
        if definition(owner, name) is None:
            raise UnknownSource(name)
        if rrd is not None and name in rrd.names():
            rrd.remove_source(name)
            d = definition(owner, name)
            if d is not None and (d.standard or name in self.recorded.get(key, set())):
                rrd.add_source(d.new())

    def _names(self, key: tuple[str, str]) -> list[str]:
        rrd = self.rrds.get(key)
        return rrd.names() if rrd is not None else []

    # ---- files ------------------------------------------------------------------------------

    def _path(self, owner: str, uuid: str) -> Path | None:
        if self.directory is None or "/" in uuid or uuid.startswith("."):
            return None
        return self.directory / f"{owner}-{uuid}.xml.gz"

    def save(self, owner: str, uuid: str) -> None:
        rrd = self.rrds.get((owner, uuid))
        path = self._path(owner, uuid)
        if rrd is None or path is None:
            return
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(gzip.compress(to_xml(rrd, exact=True), compresslevel=3))
        os.replace(tmp, path)

    def save_all(self) -> None:
        for owner, uuid in list(self.rrds):
            self.save(owner, uuid)

    def load(self) -> int:
        """Read every archive in the directory; return how many were read."""
        if self.directory is None or not self.directory.is_dir():
            return 0
        count = 0
        for path in sorted(self.directory.glob("*.xml.gz")):
            owner, _, uuid = path.name.removesuffix(".xml.gz").partition("-")
            if owner not in OWNERS:
                continue
            try:
                self.rrds[(owner, uuid)] = from_xml(gzip.decompress(path.read_bytes()))
                count += 1
            except (OSError, ValueError, EOFError) as exc:
                log.warning("ignoring unreadable archive %s: %s", path, exc)
        return count
