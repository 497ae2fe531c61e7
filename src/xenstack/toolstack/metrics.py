"""The metric archives and their collector, and the answers of XAPI's RRD handlers."""

from __future__ import annotations

from typing import Any

from ..impl.host.rrd_feed import DbFeed, record_rates
from ..net.ovs import OvsSwitch
from ..rrd import query as rrd_query
from ..rrd.collector import Collector
from ..rrd.store import RrdStore


def make_metrics(toolstack: Any) -> tuple[RrdStore, Collector]:
    """The metric archives (kept in ``STATE/rrd``) and their collector, fed from the database
    and the backend; this host's figures from ``/proc`` unless simulated. Each tick's rates
    keep the ``*_metrics`` records current."""
    state_dir, db, clock = toolstack.state_dir, toolstack.db, toolstack.clock
    store = RrdStore(state_dir / "rrd" if state_dir is not None else None)
    store.load()
    local = toolstack.hypervisor.simulator is None
    feed = DbFeed(db, toolstack.hypervisor, lambda: toolstack.this_host, local)
    vifs = not isinstance(toolstack.switch, OvsSwitch)  # a real switch writes VIF_metrics
    on_tick = lambda rates: record_rates(db, clock.now(), rates, vifs)  # noqa: E731
    return store, Collector(store, feed, on_tick=on_tick)


def rrd_answer(toolstack: Any, path: str, query: Any, accept: str | None) -> tuple[bytes, str]:
    """The body and content type of ``/rrd_updates``, ``/host_rrd``, ``/vm_rrd``, ``/sr_rrd``."""
    host = toolstack.db.table("host").rows.get(toolstack.this_host)
    host_uuid = str(host["uuid"]) if host else ""
    if path == "/rrd_updates":
        return rrd_query.rrd_updates(toolstack.rrd, host_uuid, query, accept)
    if path == "/host_rrd":
        return rrd_query.whole_rrd(toolstack.rrd, "host", host_uuid)
    owner = "vm" if path == "/vm_rrd" else "sr"
    return rrd_query.whole_rrd(toolstack.rrd, owner, query.get("uuid", ""))
