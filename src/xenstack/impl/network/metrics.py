"""Counters from the switch into the database: VIF_metrics from the ports' statistics, a
bond's ``links_up`` from its members' links, PIF_metrics' carrier.

A VIF's ``io_read_kbs`` is what its guest received (the host side's transmit counter), its
``io_write_kbs`` what it sent, averaged over the time since the last sample.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...core.ids import now
from .ports import switch

if TYPE_CHECKING:
    from ...core.context import Services

INTERVAL = 5.0


@dataclass(slots=True)
class Sampler:
    services: Services
    last: dict[str, tuple[float, int, int]] = field(default_factory=dict)

    async def sample(self) -> int:
        """Record one sample; return how many rows changed."""
        ports = await switch(self.services).ports()
        db = self.services.db
        by_uuid = {row["uuid"]: ref for ref, row in db.table("VIF").rows.items()}
        changes: dict[str, dict[str, object]] = {}
        bonds: dict[str, int] = {}
        moment = time.monotonic()
        for name, port in ports.items():
            vif = by_uuid.get(port.external_ids.get("xs-vif-uuid", ""))
            if vif is not None:
                tx, rx = port.stats.get("tx_bytes", 0), port.stats.get("rx_bytes", 0)
                before = self.last.get(name)
                self.last[name] = (moment, tx, rx)
                if before is None or moment <= before[0]:
                    continue
                span = moment - before[0]
                metrics = db.get("VIF", vif)["metrics"]
                if db.exists("VIF_metrics", metrics):
                    changes[metrics] = {
                        "io_read_kbs": max(tx - before[1], 0) / 1024 / span,
                        "io_write_kbs": max(rx - before[2], 0) / 1024 / span,
                    }
            elif port.kind == "bond":
                bonds[name] = port.links_up
        rows = 0
        with db.transaction():
            for metrics, fields in changes.items():
                old = db.get("VIF_metrics", metrics)
                if any(old.get(k) != v for k, v in fields.items()):
                    db.update("VIF_metrics", metrics, **fields, last_updated=now())
                    rows += 1
            for ref, bond in db.table("Bond").rows.items():
                master = db.table("PIF").rows.get(bond["master"])
                if master is None or master["host"] != self.services.this_host:
                    continue
                up = bonds.get(master["device"])
                if up is not None and up != bond["links_up"]:
                    db.set("Bond", ref, "links_up", up)
                    rows += 1
        return rows
