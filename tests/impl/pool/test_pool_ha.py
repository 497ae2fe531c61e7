"""HA's API on a pool simulated in one process: XAPI's checks, errors and the planner.

(The daemons, fencing and recovery need hosts of their own: tests/ha/.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI

from xenstack.testing import RunningPool, failure, halted_vm, simulated_pool

GIB = 1 << 30


@pytest.fixture
def pool() -> Iterator[RunningPool]:
    with simulated_pool(hosts=3, shared_sr=True) as p:
        yield p


def api(pool: RunningPool) -> Any:
    s = XenAPI.Session(pool.url)
    s.xenapi.login_with_password("root", pool.password, "1.0", "ha-tests")
    return s.xenapi


def test_enable_disable_and_their_errors(pool: RunningPool) -> None:
    x = api(pool)
    (p,) = x.pool.get_all()
    assert failure(x.pool.disable_ha) == ["HA_NOT_ENABLED"]
    local = next(sr for sr, r in x.SR.get_all_records().items() if not r["shared"])
    assert failure(x.pool.enable_ha, [local], {}) == [
        "HA_CONSTRAINT_VIOLATION_SR_NOT_SHARED",
        local,
    ]
    assert failure(x.pool.enable_ha, [], {"timeout": "soon"}) == [
        "INVALID_VALUE",
        "timeout",
        "soon",
    ]
    assert not x.pool.get_ha_enabled(p)
    x.pool.enable_ha([], {"timeout": "5"})  # picks the shared SR
    assert x.pool.get_ha_enabled(p)
    (statefile,) = x.pool.get_ha_statefiles(p)
    shared = next(
        r for r in x.SR.get_all_records().values() if r["shared"] and r["content_type"] != "iso"
    )
    assert statefile == f"sr:{shared['uuid']}"
    assert x.pool.get_ha_configuration(p) == {"timeout": "5"}
    assert failure(x.pool.enable_ha, [], {}) == ["HA_IS_ENABLED"]
    # with HA on, a host cannot join or leave
    host = next(h for h in x.host.get_all() if h != x.pool.get_master(p))
    assert failure(x.pool.eject, host) == ["HA_IS_ENABLED"]
    x.pool.disable_ha()
    assert not x.pool.get_ha_enabled(p)
    assert x.pool.get_ha_statefiles(p) == []


def test_restart_priority_values(pool: RunningPool) -> None:
    x = api(pool)
    vm = halted_vm(x)
    for value in ("restart", "best-effort", ""):
        x.VM.set_ha_restart_priority(vm, value)
        assert x.VM.get_ha_restart_priority(vm) == value
    assert failure(x.VM.set_ha_restart_priority, vm, "always") == [
        "INVALID_VALUE",
        "ha_restart_priority",
        "always",
    ]
    x.VM.set_order(vm, "3")
    x.VM.set_start_delay(vm, "2")
    assert (x.VM.get_order(vm), x.VM.get_start_delay(vm)) == ("3", "2")


def test_the_plan_counts_protected_memory(pool: RunningPool) -> None:
    x = api(pool)
    (p,) = x.pool.get_all()
    hosts = sorted(x.host.get_all())
    free = int(x.host_metrics.get_memory_free(x.host.get_metrics(hosts[0])))
    assert x.pool.ha_compute_max_host_failures_to_tolerate() == "2"  # nothing protected
    # a protected VM per host, each taking 40% of a host: one failure fits, two do not
    big = []
    for i, host in enumerate(hosts):
        vm = halted_vm(x, f"big{i}", memory=(free * 4 // 10) // GIB * GIB)
        x.VM.set_ha_restart_priority(vm, "restart")
        x.VM.start_on(vm, host, False, False)
        big.append(vm)
    assert x.pool.ha_compute_max_host_failures_to_tolerate() == "1"
    assert x.pool.ha_failover_plan_exists("1")
    assert not x.pool.ha_failover_plan_exists("2")
    unprotect = {big[0]: "", big[1]: ""}
    assert x.pool.ha_compute_hypothetical_max_host_failures_to_tolerate(unprotect) == "2"
    x.pool.enable_ha([], {"timeout": "5"})
    assert x.pool.get_ha_plan_exists_for(p) == "1"
    assert failure(x.pool.set_ha_host_failures_to_tolerate, p, "2") == [
        "HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN"
    ]
    assert failure(x.pool.set_ha_host_failures_to_tolerate, p, "-1")[0] == "INVALID_VALUE"
    x.VM.set_ha_restart_priority(big[0], "")
    x.VM.set_ha_restart_priority(big[1], "")
    x.pool.set_ha_host_failures_to_tolerate(p, "2")
    assert x.pool.get_ha_plan_exists_for(p) == "2"
    assert not x.pool.get_ha_overcommitted(p)
    # protecting one again would break the plan for two failures...
    assert failure(x.VM.set_ha_restart_priority, big[0], "restart") == [
        "HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN"
    ]
    # ...unless overcommitting is allowed: then the pool says it is overcommitted
    x.pool.set_ha_allow_overcommit(p, True)
    x.VM.set_ha_restart_priority(big[0], "restart")
    assert x.pool.get_ha_overcommitted(p)
    plan = x.pool.ha_compute_vm_failover_plan(hosts[:2], big[:2])
    assert sorted(map(str, plan.values())) == sorted(
        [str({"host": hosts[2]}), str({"error_code": "HOST_NOT_ENOUGH_FREE_MEMORY"})]
    )
    x.pool.ha_prevent_restarts_for("10")
    x.pool.disable_ha()
    assert failure(x.pool.ha_prevent_restarts_for, "10") == ["HA_NOT_ENABLED"]


def test_declare_dead_halts_the_hosts_vms(pool: RunningPool) -> None:
    x = api(pool)
    (p,) = x.pool.get_all()
    master = x.pool.get_master(p)
    other = next(h for h in x.host.get_all() if h != master)
    vm = halted_vm(x, "on-other")
    x.VM.start_on(vm, other, False, False)
    assert failure(x.host.declare_dead, master) == ["HOST_IS_LIVE", master]
    x.host.declare_dead(other)
    assert x.VM.get_power_state(vm) == "Halted"
    assert not x.host_metrics.get_live(x.host.get_metrics(other))
    x.VM.start_on(vm, master, False, False)  # its domain is gone: it starts again
    assert x.VM.get_resident_on(vm) == master
