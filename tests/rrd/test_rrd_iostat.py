"""The disk sources as XAPI's rrdp-iostat names them: per VM ``vbd_<dev>_<key>``, per SR on
the host ``<key>_<sr8>``, and the SR's own RRD; their units; and their values against the
simulator's exact counters (a disk that moved N bytes in requests of R bytes taking L ns)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from rrdkit import Driver, busy_vm

from xenstack.rrd.sources import definition

# rrdp-iostat (xen-api ocaml/xcp-rrdd/bin/rrdp-iostat): key -> units, for a VM's disk and a
# host's SR alike
IOSTAT = {
    "read": "B/s",
    "write": "B/s",
    "read_latency": "μs",
    "write_latency": "μs",
    "io_throughput_read": "MiB/s",
    "io_throughput_write": "MiB/s",
    "io_throughput_total": "MiB/s",
    "iops_read": "requests/s",
    "iops_write": "requests/s",
    "iops_total": "requests/s",
    "iowait": "s/s",
    "inflight": "requests",
    "latency": "μs",
    "avgqu_sz": "requests",
}
MIB = 1024 * 1024


def _sources(x: Any, cls: str, ref: str) -> dict[str, dict[str, Any]]:
    return {s["name_label"]: s for s in getattr(x, cls).get_data_sources(ref)}


def _master(x: Any) -> str:
    (pool,) = x.pool.get_all_records().values()
    return str(pool["master"])


def test_the_names_and_units_are_xapis(session: Any, driver: Driver) -> None:
    x = session.xenapi
    vm = busy_vm(session)
    driver.tick(3)
    (pool_rec,) = x.pool.get_all_records().values()
    sr8 = x.SR.get_uuid(pool_rec["default_SR"])[:8]
    vm_sources = _sources(x, "VM", vm)
    host_sources = _sources(x, "host", _master(x))
    for key, units in IOSTAT.items():
        assert vm_sources[f"vbd_xvda_{key}"]["units"] == units, key
        assert vm_sources[f"vbd_xvda_{key}"]["enabled"]
        assert host_sources[f"{key}_{sr8}"]["units"] == units, key
        assert host_sources[f"{key}_{sr8}"]["enabled"]
    disk = {n for n in vm_sources if n.startswith("vbd_")}
    assert disk == {f"vbd_xvda_{key}" for key in IOSTAT}
    per_sr = {n for n in host_sources if n.endswith(f"_{sr8}")}
    assert per_sr == {f"{key}_{sr8}" for key in IOSTAT}
    # none is a prefix trap: the device is what comes before the key
    assert definition("vm", "vbd_xvda_iops_read").units == "requests/s"  # type: ignore[union-attr]
    assert definition("vm", "vbd_xvdb_read").units == "B/s"  # type: ignore[union-attr]
    assert definition("host", "io_throughput_read_zzzz") is None


def test_values_follow_the_counters(session: Any, driver: Driver) -> None:
    x = session.xenapi
    vm = busy_vm(session)
    dom = driver.domain(vm)
    driver.sim(lambda sim: sim.load.set_quiet(dom))
    driver.tick(2)
    counters = driver.sim(lambda sim: sim.load.counters[vm][1])
    request, latency_ns = counters.request, counters.latency_ns
    read, write = int(request * 40), int(request * 10)  # 40 and 10 whole requests
    driver.sim(lambda sim: sim.load.transfer(dom, "vbd_read", "0", read))
    driver.sim(lambda sim: sim.load.transfer(dom, "vbd_write", "0", write))
    driver.tick()
    uuid = x.VM.get_uuid(vm)
    rrd = driver.pool.call(lambda ts: ts.rrd.get("vm", uuid))
    v = {k: rrd.latest(f"vbd_xvda_{k}") for k in IOSTAT if k != "inflight"}
    assert v["read"] == pytest.approx(read / 5)
    assert v["write"] == pytest.approx(write / 5)
    assert v["io_throughput_read"] == pytest.approx(read / 5 / MIB)
    assert v["io_throughput_total"] == pytest.approx((read + write) / 5 / MIB)
    assert v["iops_read"] == pytest.approx(40 / 5)
    assert v["iops_write"] == pytest.approx(10 / 5)
    assert v["iops_total"] == pytest.approx(50 / 5)
    assert v["read_latency"] == pytest.approx(latency_ns / 1000, rel=1e-3)
    assert v["write_latency"] == pytest.approx(latency_ns / 1000, rel=1e-3)
    assert v["latency"] == pytest.approx(latency_ns / 1000, rel=1e-3)
    assert v["iowait"] == pytest.approx(50 * latency_ns / 1e9 / 5, rel=1e-3)
    assert v["avgqu_sz"] == pytest.approx(v["iowait"], rel=1e-3)  # Little's law over 5 s
    # the host's figures for the SR are the sum over its disks there: this one alone
    (pool_rec,) = x.pool.get_all_records().values()
    sr8 = x.SR.get_uuid(pool_rec["default_SR"])[:8]
    host = x.host.get_uuid(_master(x))
    host_rrd = driver.pool.call(lambda ts: ts.rrd.get("host", host))
    assert host_rrd.latest(f"read_{sr8}") == pytest.approx(read / 5)
    assert host_rrd.latest(f"iops_total_{sr8}") == pytest.approx(10.0)
    assert host_rrd.latest(f"io_throughput_write_{sr8}") == pytest.approx(write / 5 / MIB)
    assert host_rrd.latest(f"read_latency_{sr8}") == pytest.approx(latency_ns / 1000, rel=1e-3)
    # VBD_metrics from the same source
    vbd = x.VM.get_VBDs(vm)[0]
    assert x.VBD_metrics.get_io_read_kbs(x.VBD.get_metrics(vbd)) == pytest.approx(read / 5 / 1024)
    # a quiet tick: no requests, so no latency (XAPI's 0), and no throughput
    driver.tick()
    rrd = driver.pool.call(lambda ts: ts.rrd.get("vm", uuid))
    assert rrd.latest("vbd_xvda_read_latency") == 0.0
    assert rrd.latest("vbd_xvda_iops_total") == 0.0


def test_a_paused_disk_has_nothing_in_flight(session: Any, driver: Driver) -> None:
    x = session.xenapi
    vm = busy_vm(session)
    uuid = x.VM.get_uuid(vm)

    def requests_seen() -> bool:  # the synthetic load makes requests once the guest is up
        driver.tick()
        rrd = driver.pool.call(lambda ts: ts.rrd.get("vm", uuid))
        try:
            return bool(rrd.latest("vbd_xvda_read_latency") > 0)
        except (AttributeError, KeyError):  # not sampled yet, or no rate yet
            return False

    deadline = time.monotonic() + 60
    while not requests_seen():
        assert time.monotonic() < deadline, "the synthetic load made no disk requests"
        time.sleep(0.05)
    x.VM.pause(vm)
    driver.tick(2)
    rrd = driver.pool.call(lambda ts: ts.rrd.get("vm", uuid))
    assert rrd.latest("vbd_xvda_iops_total") == 0.0
    assert rrd.latest("vbd_xvda_read") == 0.0
