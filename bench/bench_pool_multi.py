"""The pool benchmarks of separate toolstacks (run through ``bench_pool.py --only ...``)."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib

from xenstack.testing import ServerProcess, halted_vm, server_process
from xenstack.testing.etcd import etcd_cluster

Report = Callable[[str, str, str, bool], None]


def login(url: str, password: str) -> tuple[Any, str]:
    proxy = xmlrpc.client.ServerProxy(url, allow_none=True)
    answer = proxy.session.login_with_password("root", password, "1.0", "bench")
    return proxy, answer["Value"]


def setter_rate(server: ServerProcess, seconds: float) -> dict[str, Any]:
    proxy, sid = login(server.url, server.password)
    vm = proxy.VM.get_all(sid)["Value"][0]
    full = xmlrpc.client.dumps((sid, vm, "@@"), "VM.set_name_description").encode()
    prefix, suffix = full.split(b"@@")
    script = benchlib.lua_counter_post(prefix, suffix)
    result = benchlib.wrk(server.url, script, 8, 2, int(seconds))
    proxy("close")()
    return result


def bench_durable(report: Report, seconds: float) -> None:
    print("durable: VM.set_name_description from 8 keep-alive clients (wrk)")
    with tempfile.TemporaryDirectory(prefix="xp-bench-") as tmp:
        with server_process(Path(tmp) / "sqlite") as server:
            sqlite = setter_rate(server, seconds)
        with (
            etcd_cluster(Path(tmp) / "etcd") as cluster,
            server_process(Path(tmp) / "etcd-host", ["--etcd", cluster.urls]) as server,
        ):
            etcd = setter_rate(server, seconds)
    for name, r in (("SQLite", sqlite), ("etcd (3 members)", etcd)):
        print(f"    {name:<18} {r['rps']:.0f}/s (p50 {r['p50']}, p99 {r['p99']}, non-2xx "
              f"{r['non2xx']})")  # fmt: skip
    ratio = etcd["rps"] / sqlite["rps"] if sqlite["rps"] else 0.0
    report("durable setter calls on etcd, 8 clients", f"{etcd['rps']:.0f}/s ({ratio:.2f}x "
           "SQLite)", ">= 2000/s", etcd["rps"] >= 2000)  # fmt: skip


def _pool(tmp: Path, extra: list[str], n: int) -> list[ServerProcess]:
    servers = []
    for i in range(n):
        s = ServerProcess(tmp / f"h{i}", benchlib_free_port(), ["--https-port", "0", *extra])
        s.start()
        servers.append(s)
    master = servers[0]
    for member in servers[1:]:
        proxy, sid = login(member.url, member.password)
        proxy.pool.join(sid, f"127.0.0.1:{master.port}", "root", master.password)
    return servers


def benchlib_free_port() -> int:
    from xenstack.testing import free_port

    return free_port()


def _p50_ms(fn: Callable[[], Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def bench_forward(report: Report, rounds: int) -> None:
    print("forward: VM.pause + VM.unpause, a member's VM (forwarded) vs a master's VM")
    import XenAPI

    with tempfile.TemporaryDirectory(prefix="xp-bench-") as tmp:
        servers = _pool(Path(tmp), [], 2)
        try:
            s = XenAPI.Session(servers[0].url)
            s.xenapi.login_with_password("root", servers[0].password, "1.0", "bench")
            x = s.xenapi
            master = x.pool.get_master(x.pool.get_all()[0])
            member = next(h for h in x.host.get_all() if h != master)
            local, remote = halted_vm(x, "local"), halted_vm(x, "remote")
            x.VM.start_on(local, master, False, False)
            x.VM.start_on(remote, member, False, False)

            def cycle(vm: str) -> Callable[[], None]:
                return lambda: (x.VM.pause(vm), x.VM.unpause(vm))

            for vm in (local, remote):
                _p50_ms(cycle(vm), 20)  # warm
            here = _p50_ms(cycle(local), rounds)
            there = _p50_ms(cycle(remote), rounds)
        finally:
            for server in servers:
                server.stop()
    print(f"    local p50 {here:.2f} ms, forwarded p50 {there:.2f} ms (two calls each)")
    per_call = (there - here) / 2
    report("forwarded call overhead (p50)", f"{per_call:.2f} ms/call", "<= 2 ms", per_call <= 2)


def bench_master(report: Report, runs: int, lease: float) -> None:
    print(f"master: kill -9 the master -> a member answers pool.get_master (lease {lease} s)")
    import XenAPI

    times: list[float] = []
    for _ in range(runs):
        with (
            tempfile.TemporaryDirectory(prefix="xp-bench-") as tmp,
            etcd_cluster(Path(tmp) / "etcd") as cluster,
        ):
            extra = ["--etcd", cluster.urls, "--master-lease", str(lease)]
            servers = _pool(Path(tmp), extra, 3)
            password = servers[0].password
            proxy, sid = login(servers[0].url, password)
            old = proxy.pool.get_master(sid, proxy.pool.get_all(sid)["Value"][0])["Value"]
            try:
                servers[0].kill()
                start = time.monotonic()
                done = threading.Event()
                while not done.is_set():
                    for server in servers[1:]:
                        try:
                            s = XenAPI.Session(server.url)
                            s.xenapi.login_with_password("root", password, "1.0", "b")
                            # answered as the new master once it names itself master
                            if s.xenapi.pool.get_master(s.xenapi.pool.get_all()[0]) != old:
                                done.set()
                                break
                        except (OSError, XenAPI.Failure):
                            pass
                    time.sleep(0.02)
                    if time.monotonic() - start > 120:
                        raise TimeoutError("no master elected")
                times.append(time.monotonic() - start)
            finally:
                for server in servers:
                    server.stop()
        print(f"    run {len(times)}: {times[-1]:.2f} s", flush=True)
    worst = max(times)
    print(f"    min {min(times):.2f} s, median {statistics.median(times):.2f} s, max {worst:.2f} s")
    report("master failover (max over runs)", f"{worst:.2f} s", f"<= {lease + 1:.0f} s",
           worst <= lease + 1)  # fmt: skip


def bench_failover(report: Report, runs: int, timeout: int) -> None:
    print(f"failover: a member killed -> its protected VM Running elsewhere (timeout {timeout} s)")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "ha"))
    from hakit import ha_pool, wait_until

    times: list[float] = []
    for _ in range(runs):
        with (
            tempfile.TemporaryDirectory(prefix="xp-bench-") as tmp,
            ha_pool(Path(tmp), timeout=timeout) as pool,
        ):
            x = pool.api()
            member = pool.ref(1, x)
            vm = halted_vm(x, "protected")
            x.VM.set_ha_restart_priority(vm, "restart")
            x.VM.start_on(vm, member, False, False)
            pool.kill(pool.hosts[1])
            took = wait_until(
                "restarted",
                lambda vm=vm, member=member, x=x: (
                    x.VM.get_power_state(vm) == "Running" and x.VM.get_resident_on(vm) != member
                ),
                120,
            )
            pool.assert_never_twice()
            times.append(took)
        print(f"    run {len(times)}: {took:.2f} s", flush=True)
    q = statistics.quantiles(times, n=10) if len(times) > 1 else times
    print(f"    min {min(times):.2f} s, median {statistics.median(times):.2f} s, p90 "
          f"{q[-1]:.2f} s, max {max(times):.2f} s")  # fmt: skip
    report("member failover (max over runs)", f"{max(times):.2f} s", "<= 7 s", max(times) <= 7)


def main(argv: list[str], report: Report, results: list[Any]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="durable,forward,master,failover")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--lease", type=float, default=5.0)
    args = ap.parse_args(argv)
    benches: dict[str, Callable[[], None]] = {
        "durable": lambda: bench_durable(report, args.seconds),
        "forward": lambda: bench_forward(report, args.rounds),
        "master": lambda: bench_master(report, args.runs, args.lease),
        "failover": lambda: bench_failover(report, args.runs, int(args.lease)),
    }
    for name in args.only.split(","):
        benches[name]()
    print("summary:")
    for name, figure, target, met in results:
        print(f"  {'ok    ' if met else 'MISSED'} {name:<44} {figure:<28} target {target}")
    return 0
