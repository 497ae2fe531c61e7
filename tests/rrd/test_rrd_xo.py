"""Xen Orchestra's connector fetches stats as xo-server does and parses them
(``tests/clients/xen-api/stats.mjs``): the figures it builds are the load the test made.

Needs node and npm (the connector and JSON5 come from the npm registry, pinned by the lock
file); without them the test is skipped, except under CI where it fails.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest
from rrdkit import Driver, busy_vm
from systools import XO_CLIENT, xo_connector

from xenstack.testing import RunningPool

CLIENT = XO_CLIENT


@pytest.fixture(scope="module")
def node() -> str:
    return xo_connector()


def test_xen_orchestra_reads_the_stats(
    node: str, pool: RunningPool, session: Any, driver: Driver
) -> None:
    x = session.xenapi
    vm = busy_vm(session)
    dom = driver.domain(vm)
    driver.sim(lambda sim: sim.load.set_quiet(dom))
    driver.sim(lambda sim: sim.load.set_cpu(dom, 0.4))
    driver.now = (int(time.time()) // 5) * 5 - 5 * 125  # ten minutes up to now
    driver.tick(124)
    driver.sim(lambda sim: sim.load.transfer(dom, "vif_rx", "0", 5 * 3000))
    driver.tick()
    done = subprocess.run(
        [node, "stats.mjs", pool.url, pool.password, x.VM.get_uuid(vm)],
        cwd=CLIENT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = done.stdout.strip().splitlines()
    assert lines, f"no findings; stderr:\n{done.stderr}"
    report = json.loads(lines[-1])
    failed = {k: v for k, v in report["findings"].items() if v is not True}
    assert done.returncode == 0 and not failed, f"{failed}\n{done.stderr}"
    assert len(report["findings"]) == 8  # every check ran
    vm_stats, host_stats = report["vm"], report["host"]
    assert vm_stats["cpus"]["0"][-1] == pytest.approx(40.0)  # XO's percent
    assert vm_stats["vifs"]["rx"]["0"][-1] == 3000 and vm_stats["vifs"]["rx"]["0"][-2] == 0
    metrics = x.VM.get_metrics(vm)
    assert vm_stats["memory"][-1] == pytest.approx(int(x.VM_metrics.get_memory_actual(metrics)))
    (pool_rec,) = x.pool.get_all_records().values()
    total = int(x.host_metrics.get_memory_total(x.host.get_metrics(pool_rec["master"])))
    assert host_stats["memory"][-1] == pytest.approx(total)
    assert len(vm_stats["cpus"]["0"]) >= 115  # ten minutes of 5-second rows
