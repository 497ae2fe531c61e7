#!/usr/bin/env python3
"""xenstack-nova's periodic host reports on a big pool, against their budget.

    /work/venvs/openstack/bin/python bench/bench_nova.py [--hosts 100] [--vms 1000] [--rounds 30]

Run with the OpenStack virtualenv's interpreter (nova and xenstack-nova installed there); the
toolstack runs as ``xenstack serve`` from the project's interpreter (XENSTACK_PYTHON, default
.venv/bin/python), sizes-only storage, reached over the wire. The pool is built through the
API: ``--vms`` VMs created and started evenly over ``--hosts`` hosts from 8 sessions.

update_provider_tree and get_available_resource, as nova-compute calls them every minute for
one member of the pool: median and p90 over ``--rounds`` calls, target <= 50 ms each. The
baseline, measured in the same run, is one ``host.get_record`` round trip: the ratio says how
many round trips' worth each report costs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "openstack" / "tests"))

import xenstack_server  # noqa: E402

MiB = 1 << 20
BUDGET_MS = 50.0


def populate(server: xenstack_server.XenstackServer, vms: int, threads: int = 8) -> float:
    x0 = server.session().xenapi
    hosts = sorted(x0.host.get_all())
    started = time.perf_counter()

    def work(worker: int) -> None:
        x = server.session().xenapi
        for i in range(worker, vms, threads):
            vm = x.VM.create(
                {
                    "name_label": f"bench-{i}",
                    "memory_static_max": str(256 * MiB),
                    "memory_dynamic_max": str(256 * MiB),
                    "memory_dynamic_min": str(256 * MiB),
                    "memory_static_min": str(256 * MiB),
                    "VCPUs_max": "2",
                    "VCPUs_at_startup": "2",
                    "HVM_boot_policy": "BIOS order",
                    "other_config": {"nova_uuid": f"bench-{i}"},
                }
            )
            x.VM.start_on(vm, hosts[i % len(hosts)], False, False)

    pool = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return time.perf_counter() - started


def timed(fn: Any, rounds: int) -> tuple[float, float]:
    fn()  # warm: connections made, caches filled
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.9) - 1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--vms", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()

    from nova import conf as nova_conf
    from nova.compute import provider_tree
    from nova.virt import fake
    from nova.virt.xenstack_ext import XenAPIDriver

    server = xenstack_server.XenstackServer(hosts=args.hosts, extra_args=["--sim-storage"])
    server.start()
    try:
        build = populate(server, args.vms)
        x = server.session().xenapi
        member = sorted(x.host.get_all())[args.hosts // 2]
        conf = nova_conf.CONF
        conf([], project="nova")
        for key, value in server.flags().items():
            conf.set_override(key, value, group="xenserver")
        conf.set_override("host_uuid", x.host.get_uuid(member), group="xenserver")
        drv = XenAPIDriver(fake.FakeVirtAPI())
        drv.init_host("bench")
        node = drv.get_available_nodes()[0]
        tree = provider_tree.ProviderTree()
        tree.new_root(node, "00000000-0000-0000-0000-000000000001")

        base = timed(lambda: drv.conn.session.call("host.get_record", drv.conn.host), args.rounds)
        gar = timed(lambda: drv.get_available_resource(node), args.rounds)
        upt = timed(lambda: drv.update_provider_tree(tree, node), args.rounds)
        res = drv.get_available_resource(node)
        inv = tree.data(node).inventory
        print(f"pool: {args.hosts} hosts, {args.vms} VMs running, built in {build:.1f} s")
        print(
            f"member {node}: vcpus_used {res['vcpus_used']}, memory_mb_used "
            f"{res['memory_mb_used']}, inventory {sorted(inv)}"
        )
        print(f"baseline host.get_record round trip: median {base[0]:.2f} ms")
        ok = True
        for name, (med, p90) in (("get_available_resource", gar), ("update_provider_tree", upt)):
            verdict = "ok" if med <= BUDGET_MS else "OVER"
            ok = ok and med <= BUDGET_MS
            print(
                f"{name:24s} median {med:6.2f} ms  p90 {p90:6.2f} ms  "
                f"{med / base[0]:5.1f}x baseline  target <= {BUDGET_MS:.0f} ms: {verdict}"
            )
        drv.cleanup_host("bench")
        return 0 if ok else 1
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
