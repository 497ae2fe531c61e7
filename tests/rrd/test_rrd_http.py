"""``/rrd_updates``, ``/host_rrd`` and ``/vm_rrd`` over HTTP, against the load the test made."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from typing import Any

from rrdkit import Driver, busy_vm, get

from xenstack.rrd.dump import from_xml
from xenstack.testing import RunningPool


def _uuid(session: Any, vm: str) -> str:
    return str(session.xenapi.VM.get_uuid(vm))


def _host_uuid(session: Any) -> str:
    (pool,) = session.xenapi.pool.get_all_records().values()
    return str(session.xenapi.host.get_uuid(pool["master"]))


def parse_xport(body: bytes) -> tuple[dict[str, int], list[str], list[tuple[int, list[float]]]]:
    root = ET.fromstring(body)
    assert root.tag == "xport"
    meta = root.find("meta")
    assert meta is not None
    numbers = {k: int(meta.findtext(k) or "") for k in ("start", "step", "end", "rows", "columns")}
    legend = [e.text or "" for e in meta.findall("legend/entry")]
    rows = [
        (int(row.findtext("t") or ""), [float(v.text or "") for v in row.findall("v")])
        for row in root.findall("data/row")
    ]
    assert numbers["rows"] == len(rows) and numbers["columns"] == len(legend)
    return numbers, legend, rows


def column(legend: list[str], rows: list[tuple[int, list[float]]], name: str) -> list[float]:
    index = legend.index(name)
    return [values[index] for _, values in rows]


def test_a_vif_that_moved_n_bytes_shows_n_and_a_busy_guest_shows_cpu(
    pool: RunningPool, session: Any, driver: Driver
) -> None:
    vm = busy_vm(session)
    dom = driver.domain(vm)
    driver.sim(lambda sim: sim.load.set_quiet(dom))
    driver.sim(lambda sim: sim.load.set_cpu(dom, 0.75))
    driver.tick(3)
    moved = 1_234_500
    driver.sim(lambda sim: sim.load.transfer(dom, "vif_rx", "0", moved))
    driver.sim(lambda sim: sim.load.transfer(dom, "vbd_write", "0", 5 * 4096))
    driver.tick()
    uuid, host = _uuid(session, vm), _host_uuid(session)
    query = f"/rrd_updates?session_id={session._session}&start={int(driver.now) - 60}&cf=AVERAGE"
    status, body = get(pool, query + "&host=true")
    assert status == 200
    meta, legend, rows = parse_xport(body)
    assert meta["step"] == 5 and meta["end"] == int(driver.now) and rows[0][0] == meta["end"]
    assert (
        f"AVERAGE:host:{host}:cpu0" in legend and f"AVERAGE:host:{host}:memory_free_kib" in legend
    )
    rx = column(legend, rows, f"AVERAGE:vm:{uuid}:vif_0_rx")
    assert math.isclose(rx[0], moved / 5, rel_tol=1e-4)  # the XML has five digits
    assert rx[1] == 0.0  # a quiet VIF before the transfer
    writes = column(legend, rows, f"AVERAGE:vm:{uuid}:vbd_xvda_write")
    assert writes[0] == 4096.0
    assert column(legend, rows, f"AVERAGE:vm:{uuid}:cpu0")[0] == 0.75
    memory = column(legend, rows, f"AVERAGE:vm:{uuid}:memory")[0]
    actual = session.xenapi.VM_metrics.get_memory_actual(session.xenapi.VM.get_metrics(vm))
    assert math.isclose(memory, float(actual), rel_tol=1e-4)
    # the JSON form: the same rows, numbers exact
    status, body = get(pool, query + "&json=true")
    doc = json.loads(body)
    assert doc["meta"]["step"] == 5 and doc["meta"]["legend"] == [e for e in legend if ":vm:" in e]
    index = doc["meta"]["legend"].index(f"AVERAGE:vm:{uuid}:vif_0_rx")
    assert doc["data"][0]["t"] == int(driver.now)
    assert doc["data"][0]["values"][index] == moved / 5
    # asked with Accept, as XAPI negotiates
    status, body = get(pool, query, {"Accept": "application/json"})
    assert status == 200 and json.loads(body)["meta"]["rows"] == doc["meta"]["rows"]


def test_a_paused_guest_burns_no_cpu(pool: RunningPool, session: Any, driver: Driver) -> None:
    vm = busy_vm(session)
    dom = driver.domain(vm)
    driver.sim(lambda sim: sim.load.set_cpu(dom, 0.5))
    driver.tick(2)
    session.xenapi.VM.pause(vm)
    driver.tick(2)
    _status, body = get(
        pool, f"/rrd_updates?session_id={session._session}&start={int(driver.now) - 30}&cf=MAX"
    )
    _, legend, rows = parse_xport(body)
    cpu = column(legend, rows, f"MAX:vm:{_uuid(session, vm)}:cpu0")
    assert cpu[0] == 0.0 and cpu[2] == 0.5


def test_the_host_shows_its_guests_cpu(pool: RunningPool, session: Any, driver: Driver) -> None:
    vms = [busy_vm(session, f"vm{i}") for i in range(2)]
    driver.tick(2)
    status, body = get(
        pool, f"/rrd_updates?session_id={session._session}&start=-10&host=true&vm_uuid=none"
    )
    assert status == 200
    _, legend, rows = parse_xport(body)
    host = _host_uuid(session)
    assert all(":host:" in e for e in legend)
    idle = column(legend, rows, f"AVERAGE:host:{host}:cpu_avg")[0]
    for vm in vms:
        dom = driver.domain(vm)
        driver.sim(lambda sim, dom=dom: sim.load.set_cpu(dom, 1.0))
    driver.tick(2)
    _status, body = get(
        pool, f"/rrd_updates?session_id={session._session}&start=-10&host=true&vm_uuid=none"
    )
    _, legend, rows = parse_xport(body)
    assert column(legend, rows, f"AVERAGE:host:{host}:cpu_avg")[0] > idle


def test_every_handler_checks_the_session(pool: RunningPool, session: Any, driver: Driver) -> None:
    busy_vm(session)
    driver.tick(2)
    for path in ("/rrd_updates?start=0", "/host_rrd", "/vm_rrd?uuid=x"):
        status, _ = get(pool, path)
        assert status == 401, path
        status, _ = get(pool, path + ("&" if "?" in path else "?") + "session_id=OpaqueRef:bad")
        assert status == 401, path
    pool.call(lambda ts: ts.auth.set_user("watcher", "secret-pw", "read-only"))
    from xenstack.testing import login

    ro = login(pool, "watcher", "secret-pw")
    try:
        status, _ = get(pool, f"/rrd_updates?session_id={ro._session}&start=0")
        assert status == 200  # XAPI: read-only may read the metrics
    finally:
        ro.xenapi.session.logout()


def test_bad_queries(pool: RunningPool, session: Any, driver: Driver) -> None:
    driver.tick(2)
    sid = session._session
    assert get(pool, f"/rrd_updates?session_id={sid}")[0] == 400  # start is required
    assert get(pool, f"/rrd_updates?session_id={sid}&start=soon")[0] == 400
    assert get(pool, f"/vm_rrd?session_id={sid}&uuid=no-such-vm")[0] == 404


def test_whole_rrds_and_they_survive_a_restart(
    pool: RunningPool, session: Any, driver: Driver, tmp_path: Any
) -> None:
    vm = busy_vm(session)
    uuid = _uuid(session, vm)
    driver.tick(30)
    status, body = get(pool, f"/host_rrd?session_id={session._session}")
    assert status == 200
    host = from_xml(body)
    assert "cpu0" in host.names() and host.step == 5
    assert [(s.pdp_per_row, s.rows) for s in host.timescales] == [
        (1, 120), (12, 120), (720, 168), (17280, 366)
    ]  # fmt: skip
    status, body = get(pool, f"/vm_rrd?session_id={session._session}&uuid={uuid}")
    before = from_xml(body)
    assert {"cpu0", "memory", "vif_0_rx", "vbd_xvda_read"} <= set(before.names())
    session.xenapi.VM.hard_shutdown(vm)
    driver.tick()  # the VM is no longer sampled: its archive is written out
    files = sorted(p.name for p in (tmp_path / "state" / "rrd").iterdir())
    assert f"vm-{uuid}.xml.gz" in files
    mode = (tmp_path / "state" / "rrd" / f"vm-{uuid}.xml.gz").stat().st_mode & 0o777
    assert mode == 0o600
    from xenstack.rrd.store import RrdStore

    again = RrdStore(tmp_path / "state" / "rrd")
    again.load()
    kept = again.get("vm", uuid)
    assert kept is not None and kept.last_updated == before.last_updated
    newest = kept.timescales[0].rings["AVERAGE"][0].oldest_first()[-5:]
    assert five_digits(newest) == before.timescales[0].rings["AVERAGE"][0].oldest_first()[-5:]


def five_digits(values: list[float]) -> list[float]:
    """XAPI's five digits (what /vm_rrd writes) compared with the exact archive."""
    return [float(f"{v:.5g}") if v == v else v for v in values]
