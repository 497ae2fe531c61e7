"""Live migration between two hosts of one pool (one toolstack process, two hosts, a shared
SR): the guest keeps running (a counter on its console keeps counting), ``resident_on``
changes, and the guest's pause is printed (the longest gap between two ticks)."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI
from conftest import console, guest_ip, install
from systools import require_root, require_tool

from xenstack.testing.guests import QemuHost, qemu_host

pytestmark = [pytest.mark.qemu, pytest.mark.guest, pytest.mark.root, pytest.mark.slow]


@pytest.fixture(scope="module")
def host() -> Iterator[QemuHost]:
    require_tool("qemu-system-x86_64")
    require_tool("dnsmasq")
    require_root()
    with qemu_host("xq", init_args=("--hosts", "2", "--shared-sr")) as h:
        yield h


def ticks(text: str) -> list[tuple[int, float]]:
    return [(int(n), float(t)) for n, t in re.findall(r"XQ-TICK (\d+) ([\d.]+)", text)]


def test_live_migration_keeps_the_guest_running(host: QemuHost, x: Any) -> None:
    pool = x.pool.get_all()[0]
    shared = next(s for s in x.SR.get_all() if x.SR.get_shared(s) and x.SR.get_type(s) != "iso")
    x.pool.set_default_SR(pool, shared)
    vm = install(x, "xq-mig")
    x.VM.start(vm, False, False)
    ip = guest_ip(x, vm)
    source = x.VM.get_resident_on(vm)
    target = next(h for h in x.host.get_all() if h != source)
    con = console(host, x, vm)
    con.run_command("(i=0; while :; do i=$((i+1)); read -r u _ < /proc/uptime;"
                    " echo XQ-TICK $i $u > /dev/console; sleep 0.1; done) & true")  # fmt: skip
    last_before = ticks(con.wait_for("XQ-TICK 5 "))[-1][0]
    domid = x.VM.get_domid(vm)
    x.VM.pool_migrate(vm, target, {"live": "true"})
    assert x.VM.get_resident_on(vm) == target
    assert x.VM.get_power_state(vm) == "Running"
    assert x.VM.get_domid(vm) != domid
    after = console(host, x, vm)  # the destination's console (the source's is gone)
    first = ticks(after.wait_for("XQ-TICK"))[0][0]
    assert first > last_before  # the same counter, not a new boot
    seen = ticks(after.wait_for(f"XQ-TICK {first + 5} "))
    assert [n for n, _ in seen[:6]] == list(range(first, first + 6))
    stats = json.loads((after.run / "migration.json").read_text())
    gaps = [b[1] - a[1] for a, b in itertools.pairwise(seen)]
    print(
        f"\nlive migration: downtime {stats['downtime_ms']:.0f} ms (QEMU), total"
        f" {stats['wall_s']:.2f} s; guest ticks after it at most {max(gaps):.2f} s apart"
    )
    assert guest_ip(x, vm) == ip
    x.VM.hard_shutdown(vm)


def test_migration_refuses_an_unknown_host(x: Any) -> None:
    vm = x.VM.get_by_name_label("xq-mig")[0]
    with pytest.raises(XenAPI.Failure) as err:
        x.VM.pool_migrate(vm, "OpaqueRef:nowhere", {})
    assert err.value.details[0] == "HANDLE_INVALID"
