"""host/VM/SR.get_data_sources, query_data_source, record_data_source and
forget_data_source_archives over the SDK; the *_metrics records kept current; a VM's archive
following it to another host."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import XenAPI
from rrdkit import Driver, busy_vm, get
from vmkit import add_hosts, wait_for

from xenstack.testing import RunningPool, login


def _master(x: Any) -> str:
    (pool,) = x.pool.get_all_records().values()
    return str(pool["master"])


def test_vm_data_sources(pool: RunningPool, session: Any, driver: Driver) -> None:
    x = session.xenapi
    vm = busy_vm(session)
    dom = driver.domain(vm)
    driver.sim(lambda sim: sim.load.set_cpu(dom, 0.25))
    driver.tick(3)
    sources = {s["name_label"]: s for s in x.VM.get_data_sources(vm)}
    assert {"cpu0", "memory", "memory_target", "memory_internal_free"} <= set(sources)
    assert {"vbd_xvda_read", "vbd_xvda_write", "vif_0_rx", "vif_0_tx"} <= set(sources)
    cpu = sources["cpu0"]
    assert cpu["enabled"] and cpu["standard"] and cpu["units"] == "(fraction)"
    assert cpu["min"] == 0.0 and cpu["max"] == 1.0 and cpu["value"] == 0.25
    assert x.VM.query_data_source(vm, "cpu0") == 0.25
    assert sources["memory_internal_free"]["units"] == "KiB"
    with pytest.raises(XenAPI.Failure) as failure:
        x.VM.query_data_source(vm, "no_such_source")
    assert failure.value.details[0] == "INTERNAL_ERROR"
    x.VM.forget_data_source_archives(vm, "cpu0")
    uuid = x.VM.get_uuid(vm)
    assert math.isnan(driver.pool.call(lambda ts: ts.rrd.get("vm", uuid).latest("cpu0")))
    driver.tick()
    assert x.VM.query_data_source(vm, "cpu0") == 0.0  # empty again (unknown reads as 0)
    x.VM.hard_shutdown(vm)
    with pytest.raises(XenAPI.Failure) as failure:
        x.VM.record_data_source(vm, "cpu0")
    assert failure.value.details[0] == "VM_BAD_POWER_STATE"


def test_host_sources_and_recording_one_that_is_off(
    pool: RunningPool, session: Any, driver: Driver
) -> None:
    x = session.xenapi
    host = _master(x)
    driver.tick(3)
    sources = {s["name_label"]: s for s in x.host.get_data_sources(host)}
    assert {"cpu0", "cpu_avg", "memory_total_kib", "memory_free_kib", "loadavg"} <= set(sources)
    assert {"pif_eth0_rx", "pif_eth0_tx", "xapi_memory_usage_kib"} <= set(sources)
    total = x.host_metrics.get_memory_total(x.host.get_metrics(host))
    assert x.host.query_data_source(host, "memory_total_kib") == int(total) / 1024
    off = sources["xapi_open_fds"]
    assert not off["enabled"] and not off["standard"]
    with pytest.raises(XenAPI.Failure):
        x.host.query_data_source(host, "xapi_open_fds")
    x.host.record_data_source(host, "xapi_open_fds")
    driver.tick(2)
    assert x.host.query_data_source(host, "xapi_open_fds") == 32.0  # a simulated host's
    assert {s["name_label"]: s for s in x.host.get_data_sources(host)}["xapi_open_fds"]["enabled"]
    with pytest.raises(XenAPI.Failure) as failure:
        x.host.record_data_source(host, "nonsense")
    assert failure.value.details[0] == "INTERNAL_ERROR"


def test_sr_sources(pool: RunningPool, session: Any, driver: Driver) -> None:
    x = session.xenapi
    (pool_rec,) = x.pool.get_all_records().values()
    sr = pool_rec["default_SR"]
    driver.tick(2)
    names = {s["name_label"] for s in x.SR.get_data_sources(sr)}
    assert names == {"size", "physical_utilisation"}  # what XAPI's SR plugin (xenvmd) reports
    assert x.SR.query_data_source(sr, "size") == float(x.SR.get_physical_size(sr))


def test_a_read_only_session_reads_but_does_not_record(
    pool: RunningPool, session: Any, driver: Driver
) -> None:
    driver.tick(2)
    host = _master(session.xenapi)
    pool.call(lambda ts: ts.auth.set_user("watcher", "secret-pw", "read-only"))
    ro = login(pool, "watcher", "secret-pw")
    try:
        assert ro.xenapi.host.get_data_sources(host)
        with pytest.raises(XenAPI.Failure) as failure:
            ro.xenapi.host.record_data_source(host, "xapi_open_fds")
        assert failure.value.details[0] == "RBAC_PERMISSION_DENIED"
    finally:
        ro.xenapi.session.logout()


def test_metrics_records_follow_the_samples(
    pool: RunningPool, session: Any, driver: Driver
) -> None:
    x = session.xenapi
    vm = busy_vm(session)
    dom = driver.domain(vm)
    driver.sim(lambda sim: sim.load.set_quiet(dom))
    driver.sim(lambda sim: sim.load.set_cpu(dom, 0.5))
    driver.tick(2)
    driver.sim(lambda sim: sim.load.transfer(dom, "vif_tx", "0", 10 * 1024))
    driver.sim(lambda sim: sim.load.transfer(dom, "vbd_read", "0", 20 * 1024))
    driver.tick()
    assert x.VM_metrics.get_VCPUs_utilisation(x.VM.get_metrics(vm)) == {"0": 0.5}
    (vif,) = x.VM.get_VIFs(vm)
    vif_metrics = x.VIF_metrics.get_record(x.VIF.get_metrics(vif))
    assert vif_metrics["io_write_kbs"] == 2.0 and vif_metrics["io_read_kbs"] == 0.0
    (vbd,) = x.VM.get_VBDs(vm)
    assert x.VBD_metrics.get_io_read_kbs(x.VBD.get_metrics(vbd)) == 4.0
    host = _master(x)
    cpus = [x.host_cpu.get_utilisation(c) for c in x.host.get_host_CPUs(host)]
    assert all(0.0 < c <= 1.0 for c in cpus)
    pif = next(p for p in x.host.get_PIFs(host) if x.PIF.get_device(p) == "eth0")
    assert x.PIF_metrics.get_io_read_kbs(x.PIF.get_metrics(pif)) > 0.0


def test_the_archive_follows_a_migrating_vm(
    pool: RunningPool, session: Any, driver: Driver
) -> None:
    x = session.xenapi
    (other,) = add_hosts(pool, 1)
    vm = busy_vm(session, disk=False)  # its disk would be on the master's local SR
    uuid = x.VM.get_uuid(vm)
    dom = driver.domain(vm)
    driver.sim(lambda sim: sim.load.set_cpu(dom, 0.4))
    driver.tick(5)
    wait_for(lambda: x.VM.get_guest_metrics(vm) != "OpaqueRef:NULL", 60)  # PV drivers up
    x.VM.pool_migrate(vm, other, {"live": "true"})
    dom = driver.domain(vm)
    driver.sim(lambda sim: sim.load.set_cpu(dom, 0.6))
    driver.tick(2)
    other_uuid = x.host.get_uuid(other)
    assert pool.call(lambda ts: ts.rrd.resident[uuid]) == other_uuid
    # the master's /rrd_updates no longer shows it; its RRD holds both hosts' history
    start = int(driver.now) - 40
    query = f"session_id={session._session}&start={start}&json=true&host=true"
    _, body = get(pool, f"/rrd_updates?{query}")
    assert not any(uuid in e for e in json.loads(body)["meta"]["legend"])
    rrd = pool.call(lambda ts: ts.rrd.get("vm", uuid))
    newest = rrd.timescales[0].rings["AVERAGE"][rrd.index("cpu0")].oldest_first()[-6:]
    assert newest[-1] == 0.6 and 0.4 in newest[:3]
