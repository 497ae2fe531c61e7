#!/usr/bin/env python3
"""Benchmarks of a large simulated pool in one process, each against its target.

    .venv/bin/python bench/bench_pool.py [--hosts 100] [--vms 10000] [--parallel 1000]

start-up   build 100 hosts and 10,000 VMs (VM.create), then restart the toolstack from its
           SQLite state with the simulator adopting the hosts: each <= 10 s
sync       VM.start then VM.clean_shutdown, dispatcher time (policy + lifecycle + simulator +
           durable commit), p50 <= 5 ms; baseline: VM.set_name_label through the same path
parallel   1,000 VMs started through Async.VM.start, 10 in flight at a time: total time;
           an event.from watcher must see every VM reach Running, tokens in order, none lost

Pools of separate toolstacks (``--only durable,forward,master,failover``; ``large`` is the above):

durable    VM.set_name_description from 8 keep-alive clients (wrk), the database in a
           three-member etcd on loopback, against SQLite in the same run: >= 2,000/s
forward    VM.pause + VM.unpause of a VM on a member (forwarded over TLS to its backend)
           against the same on a master's VM, p50 difference <= 2 ms
master     the master killed (kill -9) -> a member answers pool.get_master as master, with
           a lease of 5 s: <= lease + 1 s, over --runs runs
failover   HA with timeout 5 s, a member killed -> its protected VM Running on another
           host: <= 7 s, the distribution over --runs runs (no VM ever ran twice)
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from xenstack.core.calls import Origin
from xenstack.core.context import Context
from xenstack.impl.host.hypervisor import hypervisor
from xenstack.impl.install.bootstrap import create_host
from xenstack.impl.vm import vm as vm_impl
from xenstack.toolstack import Toolstack

MIB, GIB = 1 << 20, 1 << 30
ORIGIN = Origin("127.0.0.1", "tcp", "xmlrpc")
RESULTS: list[tuple[str, str, str, bool]] = []


def report(name: str, figure: str, target: str, met: bool) -> None:
    RESULTS.append((name, figure, target, met))
    print(f"{name:<34} {figure:<34} target {target:<14} {'ok' if met else 'MISSED'}", flush=True)


def record(n: int) -> dict[str, Any]:
    return {
        "name_label": f"bench-{n}", "memory_static_max": 256 * MIB,
        "memory_dynamic_max": 256 * MIB, "memory_dynamic_min": 256 * MIB,
        "memory_static_min": 128 * MIB, "VCPUs_max": 1, "VCPUs_at_startup": 1,
        "other_config": {"index": str(n)},
    }  # fmt: skip


def build(ts: Toolstack, hosts: int, vms: int) -> list[str]:
    ts.initialise("bench")
    ctx = Context(ts, "")
    with ts.db.transaction():
        for n in range(1, hosts):
            create_host(ts.db, f"host{n}", f"10.0.{n // 250}.{n % 250}", 64 * GIB)
    refs: list[str] = []
    for start in range(0, vms, 1000):
        with ts.db.transaction():
            refs += [vm_impl.create(ctx, record(n)) for n in range(start, min(vms, start + 1000))]
    hypervisor(ts)  # the simulator, with every host
    return refs


async def login(ts: Toolstack) -> str:
    return str(
        await ts.dispatcher("session.login_with_password", ["root", "bench", "1", "b"], ORIGIN)
    )


async def bench_startup(state: Path, hosts: int, vms: int) -> tuple[Toolstack, list[str]]:
    t0 = time.perf_counter()
    ts = Toolstack(state)
    refs = build(ts, hosts, vms)
    await ts.db.durable()
    built = time.perf_counter() - t0
    report(f"build {hosts} hosts + {vms} VMs", f"{built:.2f} s", "<= 10 s", built <= 10)
    await ts.stop()
    t0 = time.perf_counter()
    ts = Toolstack(state)
    hypervisor(ts)
    loaded = time.perf_counter() - t0
    report("restart from SQLite (load+adopt)", f"{loaded:.2f} s", "<= 10 s", loaded <= 10)
    return ts, refs


async def timed(ts: Toolstack, method: str, params: list[Any]) -> float:
    t0 = time.perf_counter()
    await ts.dispatcher(method, params, ORIGIN)
    return time.perf_counter() - t0


async def bench_sync(ts: Toolstack, session: str, vms: list[str], rounds: int) -> None:
    base, cycle = [], []
    for vm in vms[:rounds]:
        base.append(await timed(ts, "VM.set_name_label", [session, vm, "renamed"]))
        up = await timed(ts, "VM.start", [session, vm, False, False])
        down = await timed(ts, "VM.clean_shutdown", [session, vm])
        cycle.append(up + down)
    p50, p50_base = statistics.median(cycle) * 1e3, statistics.median(base) * 1e3
    p99 = sorted(cycle)[int(len(cycle) * 0.99) - 1] * 1e3
    report("sync start+clean_shutdown p50", f"{p50:.2f} ms (p99 {p99:.2f} ms)", "<= 5 ms", p50 <= 5)
    report(
        "  baseline set_name_label p50",
        f"{p50_base:.2f} ms (ratio {p50 / p50_base:.1f}x)",
        "-",
        True,
    )


async def watch(
    ts: Toolstack, session: str, stop: asyncio.Event, seen: dict[str, Any]
) -> list[int]:
    token, ids = "", []
    while not stop.is_set() or token == "":
        res = await ts.dispatcher("event.from", [session, ["VM"], token, 1.0], ORIGIN)
        for event in res["events"]:
            ids.append(int(event["id"]))
            if event["class"].lower() == "vm" and "snapshot" in event:
                seen[event["ref"]] = event["snapshot"]
        token = res["token"]
    res = await ts.dispatcher("event.from", [session, ["VM"], token, 0.0], ORIGIN)
    for event in res["events"]:
        ids.append(int(event["id"]))
        if "snapshot" in event:
            seen[event["ref"]] = event["snapshot"]
    return ids


async def bench_parallel(ts: Toolstack, session: str, vms: list[str], width: int) -> None:
    stop, seen = asyncio.Event(), {}
    watcher = asyncio.create_task(watch(ts, session, stop, seen))
    await asyncio.sleep(0.05)
    gate = asyncio.Semaphore(width)

    async def one(vm: str) -> str:
        async with gate:
            task = await ts.dispatcher("Async.VM.start", [session, vm, False, False], ORIGIN)
            job = ts.tasks.running.get(task)
            if job is not None:
                await job
            return str(ts.db.get("task", task)["status"])

    t0 = time.perf_counter()
    statuses = await asyncio.gather(*(one(vm) for vm in vms))
    total = time.perf_counter() - t0
    stop.set()
    ids = await watcher
    ok = statuses.count("success")
    report(
        f"{len(vms)} Async.VM.start, {width} at a time",
        f"{total:.2f} s ({len(vms) / total:.0f}/s)",
        "all succeed",
        ok == len(vms),
    )
    in_order = all(a <= b for a, b in itertools.pairwise(ids))
    running = sum(1 for vm in vms if seen.get(vm, {}).get("power_state") == "Running")
    report("event.from: events in token order", f"{len(ids)} events", "ordered", in_order)
    report(
        "event.from: every VM seen Running",
        f"{running}/{len(vms)}",
        "none lost",
        running == len(vms),
    )


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="xenstack-bench-") as tmp:
        ts, refs = await bench_startup(Path(tmp) / "state", args.hosts, args.vms)
        hypervisor(ts).guest_agent_delay = 0.5
        session = await login(ts)
        await bench_sync(ts, session, refs, args.rounds)
        await bench_parallel(ts, session, refs[args.rounds : args.rounds + args.parallel], 10)
        await ts.stop()
    return 0 if all(met for *_, met in RESULTS) else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_pool_multi

    if "--only" in sys.argv:
        sys.exit(bench_pool_multi.main(sys.argv[1:], report, RESULTS))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--parallel", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=300)
    sys.exit(asyncio.run(main(parser.parse_args())))
