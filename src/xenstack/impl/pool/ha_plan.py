"""HA's failover plan: can the protected VMs of any ``n`` failed hosts restart on the rest?

As XAPI's planner, by memory: each surviving host keeps what already runs on it, and the
protected VMs (``ha_restart_priority`` ``restart``) of the failed hosts are placed first-fit,
largest first, on the hosts that remain. ``best-effort`` VMs are restarted if they fit but
never count against the plan.
"""

from __future__ import annotations

import itertools
from typing import Any

from ...db.store import Database
from ...idl.types import NULL_REF

PROTECTED = "restart"
PRIORITIES = ("restart", "best-effort", "")
LIVE = ("Running", "Paused")


def guests(db: Database) -> dict[str, dict[str, Any]]:
    return {
        ref: row
        for ref, row in db.table("VM").rows.items()
        if not row["is_control_domain"] and not row["is_a_template"] and not row["is_a_snapshot"]
    }


def footprint(vm: dict[str, Any]) -> int:
    return int(vm["memory_static_max"]) + int(vm["memory_overhead"])


def capacity(db: Database, host: str) -> int:
    """Memory a host gives its guests (its total less the hypervisor's and dom0's)."""
    row = db.get("host", host)
    metrics = db.table("host_metrics").rows.get(row["metrics"])
    total = int(metrics["memory_total"]) if metrics else 0
    dom0 = db.table("VM").rows.get(row["control_domain"])
    return total - int(row["memory_overhead"]) - (int(dom0["memory_static_max"]) if dom0 else 0)


def live_hosts(db: Database) -> list[str]:
    found = []
    for host, row in db.table("host").rows.items():
        metrics = db.table("host_metrics").rows.get(row["metrics"])
        if row["enabled"] and (metrics is None or metrics["live"]):
            found.append(host)
    return sorted(found)


def place(
    db: Database, vms: list[str], survivors: list[str], used: dict[str, int]
) -> dict[str, str]:
    """First-fit decreasing of ``vms`` on ``survivors`` given what ``used`` holds; vm -> host
    for those that fit (``used`` is updated)."""
    rows = db.table("VM").rows
    free = {h: capacity(db, h) - used.get(h, 0) for h in survivors}
    placed: dict[str, str] = {}
    for vm in sorted(vms, key=lambda v: (-footprint(rows[v]), v)):
        need = footprint(rows[vm])
        for host in sorted(survivors, key=lambda h: -free[h]):
            if free[host] >= need:
                free[host] -= need
                used[host] = used.get(host, 0) + need
                placed[vm] = host
                break
    return placed


def _load(db: Database, hosts: list[str]) -> dict[str, int]:
    used: dict[str, int] = {}
    for row in guests(db).values():
        if row["power_state"] in LIVE and row["resident_on"] in hosts:
            used[row["resident_on"]] = used.get(row["resident_on"], 0) + footprint(row)
    return used


def plan_survives(
    db: Database, failed: tuple[str, ...], priorities: dict[str, str] | None = None
) -> bool:
    """Whether every protected VM of ``failed`` hosts finds room on the other live hosts."""
    hosts = live_hosts(db)
    survivors = [h for h in hosts if h not in failed]
    if not survivors:
        return not _protected(db, hosts, priorities)
    stranded = [vm for vm in _protected(db, hosts, priorities) if _where(db, vm) in failed]
    placed = place(db, stranded, survivors, _load(db, survivors))
    return len(placed) == len(stranded)


def _where(db: Database, vm: str) -> str:
    return str(db.get("VM", vm)["resident_on"])


def _protected(db: Database, hosts: list[str], priorities: dict[str, str] | None) -> list[str]:
    found = []
    for ref, row in guests(db).items():
        priority = (priorities or {}).get(ref, row["ha_restart_priority"])
        if priority == PROTECTED and row["power_state"] in LIVE and row["resident_on"] in hosts:
            found.append(ref)
    return found


def max_failures(db: Database, priorities: dict[str, str] | None = None) -> int:
    """The largest n such that the plan survives every choice of n failed live hosts."""
    hosts = live_hosts(db)
    best = 0
    for n in range(1, len(hosts)):
        if all(plan_survives(db, c, priorities) for c in itertools.combinations(hosts, n)):
            best = n
        else:
            break
    return best


def plan_exists(db: Database, n: int) -> bool:
    hosts = live_hosts(db)
    if n >= len(hosts):
        return n == 0
    return all(plan_survives(db, c) for c in itertools.combinations(hosts, n))


def vm_failover_plan(
    db: Database, failed_hosts: list[str], failed_vms: list[str]
) -> dict[str, dict[str, str]]:
    """Where each of ``failed_vms`` would restart if ``failed_hosts`` failed."""
    survivors = [h for h in live_hosts(db) if h not in failed_hosts]
    placed = place(db, failed_vms, survivors, _load(db, survivors))
    return {
        vm: {"host": placed[vm]} if vm in placed else {"error_code": "HOST_NOT_ENOUGH_FREE_MEMORY"}
        for vm in failed_vms
    }


def host_or_null(host: str | None) -> str:
    return host or NULL_REF
