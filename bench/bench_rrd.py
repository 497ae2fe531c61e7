#!/usr/bin/env python3
"""Benchmarks of the metrics (issue 16), each against its target and a baseline of the same run.

    .venv/bin/python bench/bench_rrd.py [--vms 100] [--ticks 60]

collect   one collector tick (every host, VM and SR sampled, the archives updated, the
          *_metrics records written) with 100 running VMs, each with a disk and a VIF, as CPU
          seconds of this process per tick: target <= 2 % of one core at the 5 s step (<= 100 ms
          a tick). Baseline: the same tick with no VM running (the host and SRs alone).
updates   GET /rrd_updates for the host and 100 VMs over the last 10 minutes (120 rows of 5 s),
          XML and JSON, median of 20 to the last byte: target <= 50 ms; sizes reported.
          Baseline: a JSON-RPC session.get_this_host round trip on the same server.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import XenAPI
from vmkit import vbd_record, vif_record

from xenstack.core.config import ToolstackConfig
from xenstack.testing import simulated_pool, vm_from_template

STEP = 5.0


def report(name: str, figure: str, target: str, met: bool) -> None:
    print(f"  {name:<46} {figure:<30} target {target:<10} {'ok' if met else 'MISSED'}", flush=True)


def make_vms(x: Any, count: int) -> list[str]:
    (pool,) = x.pool.get_all_records().values()
    network = sorted(x.network.get_all())[0]
    base = vm_from_template(x, "bench")
    vms = []
    for i in range(count):
        vm = x.VM.clone(base, f"bench{i}")
        disk = x.VDI.create(
            {
                "name_label": f"d{i}", "name_description": "", "SR": pool["default_SR"],
                "virtual_size": str(1 << 30), "type": "user", "sharable": False,
                "read_only": False, "other_config": {}, "xenstore_data": {}, "sm_config": {},
                "tags": [],
            }
        )  # fmt: skip
        x.VBD.create(vbd_record(vm, disk, "0", bootable=True))
        x.VIF.create(vif_record(vm, network, "0"))
        x.VM.start(vm, False, True)
        vms.append(vm)
    return vms


def tick_cost(pool: Any, start: float, ticks: int) -> float:
    """CPU seconds of this process per tick (the server runs in a thread of it)."""

    def run(ts: Any) -> float:
        begin = time.process_time()
        for k in range(ticks):
            ts.collector.tick(start + STEP * k)
        return (time.process_time() - begin) / ticks

    return float(pool.call(run))


def fetch(url: str) -> tuple[float, int]:
    begin = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        size = len(response.read())
    return time.perf_counter() - begin, size


def jsonrpc_round_trip(pool: Any, session: str) -> float:
    body = (
        '{"jsonrpc":"2.0","id":1,"method":"session.get_this_host","params":["%s","%s"]}'
        % (session, session)
    ).encode()
    request = urllib.request.Request(
        pool.jsonrpc_url, data=body, headers={"Content-Type": "application/json"}
    )
    begin = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
    return time.perf_counter() - begin


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--ticks", type=int, default=60)
    args = parser.parse_args()
    config = ToolstackConfig(rrd_step=0)
    state = Path(tempfile.mkdtemp(prefix="bench-rrd-")) / "state"  # SQLite: writes are real
    with simulated_pool(state, toolstack_config=config, sim_storage=True) as pool:
        s = XenAPI.Session(pool.url)
        s.xenapi.login_with_password("root", pool.password)
        x = s.xenapi
        now = (int(time.time()) // 5) * 5 - STEP * (args.ticks + 130)
        empty = tick_cost(pool, now, 20)
        now += STEP * 20
        make_vms(x, args.vms)
        busy = tick_cost(pool, now, args.ticks)
        now += STEP * args.ticks
        tick_cost(pool, now, 125)  # at least ten minutes of history for everything
        print(f"metrics collection, {args.vms} running VMs, simulator backend")
        share = busy / STEP
        report(
            "collect: CPU per tick (share of one core)",
            f"{busy * 1000:.1f} ms ({share:.2%})",
            "<= 2 %",
            share <= 0.02,
        )
        print(f"    baseline, no VM: {empty * 1000:.2f} ms a tick; ratio {busy / empty:.0f}x")
        end = pool.call(lambda ts: ts.rrd.get("host", ts.db.get("host", ts.this_host)["uuid"]))
        start = int(end.last_updated) - 600 + 5
        base = pool.url.rstrip("/") + f"/rrd_updates?session_id={s._session}&start={start}"
        base += "&host=true&cf=AVERAGE"
        rtt = statistics.median(jsonrpc_round_trip(pool, s._session) for _ in range(20))
        for form, suffix in (("XML", ""), ("JSON", "&json=true")):
            runs = [fetch(base + suffix) for _ in range(20)]
            median = statistics.median(t for t, _ in runs)
            size = runs[0][1]
            report(
                f"updates: host + {args.vms} VMs, 10 min, {form}",
                f"{median * 1000:.1f} ms, {size / 1024:.0f} KiB",
                "<= 50 ms",
                median <= 0.05,
            )
            print(f"    baseline JSON-RPC round trip {rtt * 1000:.2f} ms; ratio {median / rtt:.0f}x")
        every = pool.url.rstrip("/") + f"/rrd_updates?session_id={s._session}&start={start}"
        runs = [fetch(every + "&host=true&json=true") for _ in range(5)]
        print(
            f"    all three CFs (no cf=): JSON {statistics.median(t for t, _ in runs) * 1000:.1f} ms, "
            f"{runs[0][1] / 1024:.0f} KiB"
        )
        s.xenapi.session.logout()
    return 0


if __name__ == "__main__":
    sys.exit(main())
