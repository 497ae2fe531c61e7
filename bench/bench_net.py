#!/usr/bin/env python3
"""Benchmarks of the Open vSwitch driver, each against a baseline measured in the same run.

    sudo .venv/bin/python bench/bench_net.py [--plugs 200] [--networks 200] [--ports 1000]

plug        VIF plug as xenstack does it (tap made with XenServer's vif treatment, port with
            its external ids on a fake VLAN bridge, locking flows over the bridge's OpenFlow
            socket, ofport assigned): p50 <= 30 ms, p99 <= 100 ms; baseline: `ovs-vsctl
            add-port` of a ready tap alone
reconcile   start-up with 200 networks and 1,000 VIF ports of running VMs in the database:
            the switch compared with it and repaired (a bridge deleted by hand, 10 ports left
            from dead VMs): <= 2 s; also with the private daemons' own start
throughput  guest-to-guest TCP across the userspace bridge vs the same two veth guests on a
            Linux bridge (no target: this machine's datapath is userspace)

Everything runs in namespaces named xnb* made here, with private daemons, removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from xenstack.core.config import ToolstackConfig
from xenstack.core.ids import new_ref, new_uuid
from xenstack.impl.network.reconcile import reconcile
from xenstack.net import BridgeSpec, Locking, VifSpec
from xenstack.net.links import Links
from xenstack.net.ovs import OvsDaemons, OvsSwitch
from xenstack.testing.network import Namespaces, VethGuests, netns_exec, sh
from xenstack.toolstack import Toolstack

RESULTS: list[str] = []


def report(line: str) -> None:
    RESULTS.append(line)
    print(line, flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench_plug(spaces: Namespaces, state: Path, count: int) -> None:
    ns = spaces.add("sw")
    sw = OvsSwitch(OvsDaemons(state, netns=ns, use_system=False))
    await sw.start()
    try:
        await sw.ensure_bridge(BridgeSpec("xenbr0", "n0", hwaddr="02:58:00:00:00:01"))
        await sw.ensure_bridge(BridgeSpec("xapi1", "n1", parent="xenbr0", tag=100))
        times = []
        for i in range(count):
            mac = f"02:00:00:00:{i // 256:02x}:{i % 256:02x}"
            ids = (("attached-mac", mac), ("iface-id", f"v{i}"), ("xs-vif-uuid", f"v{i}"))
            spec = VifSpec(
                f"vif{i + 1}.0",
                "xapi1",
                mac,
                1500,
                ids,
                Locking("locked", mac, (f"10.1.{i // 250}.{i % 250 + 1}",)),
            )
            t = time.perf_counter()
            port = await sw.plug_vif(spec)
            times.append(time.perf_counter() - t)
            assert port.ofport > 0
        base = []
        vsctl = ["ovs-vsctl", f"--db={sw.daemons.remote}", "--timeout=30"]
        for i in range(count):
            name = f"xnbt{i}"
            sh(["ip", "-n", ns, "tuntap", "add", "dev", name, "mode", "tap"])
            sh(["ip", "-n", ns, "link", "set", name, "up"])
            t = time.perf_counter()
            sh([*vsctl, "add-port", "xenbr0", name])
            base.append(time.perf_counter() - t)
        p50, p99 = pct(times, 0.5) * 1000, pct(times, 0.99) * 1000
        b50, b99 = pct(base, 0.5) * 1000, pct(base, 0.99) * 1000
        ok = p50 <= 30 and p99 <= 100
        report(
            f"plug        xenstack VIF plug p50 {p50:.1f} ms p99 {p99:.1f} ms over {count} "
            f"(target p50 <= 30, p99 <= 100: {'ok' if ok else 'MISSED'}); ovs-vsctl "
            f"add-port alone p50 {b50:.1f} ms p99 {b99:.1f} ms; ratio p50 "
            f"{p50 / b50:.2f}x"
        )
    finally:
        await sw.stop()


def fill(ts: Toolstack, networks: int, ports: int) -> list[str]:
    """``networks`` internal networks and ``ports`` running VMs' VIFs spread over them."""
    db, host = ts.db, ts.this_host
    nets = []
    with db.transaction():
        for n in range(networks):
            ref = new_ref()
            db.create(
                "network",
                ref,
                {
                    "uuid": new_uuid(),
                    "name_label": f"bench{n}",
                    "bridge": f"xapi{n + 10}",
                    "MTU": 1500,
                },
            )
            nets.append(ref)
        for p in range(ports):
            vm = new_ref()
            db.create(
                "VM",
                vm,
                {
                    "uuid": new_uuid(),
                    "name_label": f"vm{p}",
                    "power_state": "Running",
                    "resident_on": host,
                    "domid": p + 1,
                },
            )
            db.create("VIF", new_ref(), {
                "uuid": new_uuid(), "VM": vm, "network": nets[p % networks], "device": "0",
                "MAC": f"02:01:00:00:{p // 256:02x}:{p % 256:02x}", "currently_attached": True,
                "MTU": 1500,
            })  # fmt: skip
    return nets


async def bench_reconcile(spaces: Namespaces, state: Path, networks: int, ports: int) -> None:
    ns = spaces.add("rc")
    sh(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])
    links = Links(ns, ipv6_off_by_default=True)
    daemons = OvsDaemons(state, netns=ns, use_system=False)
    sw = OvsSwitch(daemons, links)
    ts = Toolstack(None, config=ToolstackConfig(switch="openvswitch", netns=ns), switch=sw)
    ts.initialise("bench")
    fill(ts, networks, ports)
    await sw.start()
    try:
        # taps for every port, in one batch; then the first reconcile makes everything
        batch = "".join(
            f"tuntap add dev vif{p + 1}.0 mode tap\nlink set vif{p + 1}.0 up\n"
            for p in range(ports)
        )
        subprocess.run(["ip", "-n", ns, "-b", "-"], input=batch, text=True, check=True)
        t = time.perf_counter()
        made = await reconcile(ts)
        cold = time.perf_counter() - t
        report(
            f"reconcile   cold: {len(made.bridges_made)} bridges and {len(made.ports_made)} "
            f"ports made in {cold:.1f} s (setup, no target)"
        )
        # drift: a bridge deleted by hand (its ports go), 10 ports of VMs that died
        victim = ts.db.get("network", next(iter(ts.db.table("network").rows)))["bridge"]
        spec = next(b for b in (await sw.bridges()) if b.startswith("xapi1"))
        await sw.destroy_bridge(spec)
        for d in range(10):
            sh(["ip", "-n", ns, "tuntap", "add", "dev", f"vif{9000 + d}.0", "mode", "tap"])
            await sw.attach_vif(
                VifSpec(
                    f"vif{9000 + d}.0",
                    victim,
                    "02:02:00:00:00:01",
                    external_ids=(("xs-vif-uuid", "dead"),),
                )
            )
        await sw.detach()
        t = time.perf_counter()
        await sw.attach()
        await sw.detach()
        report(f"reconcile   (an OVSDB connect and sync alone: {time.perf_counter() - t:.2f} s)")
        # a toolstack restart with the switch running: connect, read, compare, repair
        t = time.perf_counter()
        await sw.attach()
        synced = time.perf_counter() - t
        repairs = await reconcile(ts)
        warm = time.perf_counter() - t
        ok = warm <= 2.0
        report(
            f"reconcile   restart with {networks} networks and {ports} ports: {warm:.2f} s "
            f"(of it OVSDB connect and sync {synced:.2f} s; "
            f"target <= 2 s: {'ok' if ok else 'MISSED'}); repaired {len(repairs.bridges_made)}"
            f" bridges, {len(repairs.ports_made)} ports made, {len(repairs.ports_removed)} "
            "removed"
        )
        t = time.perf_counter()
        again = await reconcile(ts)
        report(
            f"reconcile   nothing to repair: {time.perf_counter() - t:.2f} s "
            f"(changed: {again.changed})"
        )
        await sw.stop()
        t = time.perf_counter()
        await sw.start()  # the private daemons' own start, then the same comparison
        await reconcile(ts)
        report(f"reconcile   with the private daemons' start: {time.perf_counter() - t:.2f} s")
        del spec
    finally:
        await sw.stop()


SERVER = (
    "import socket,sys\ns=socket.socket();s.setsockopt(1,2,1);s.bind(('0.0.0.0',5201))"
    "\ns.listen(1);c,_=s.accept()\nn=0\nwhile True:\n d=c.recv(1<<20)\n if not d: break\n"
    " n+=len(d)\nprint(n)"
)
CLIENT = (
    "import socket,sys,time\nc=socket.create_connection((sys.argv[1],5201),timeout=30)"
    "\nb=b'x'*(1<<16);t=time.time();n=0\nwhile time.time()-t<float(sys.argv[2]):\n"
    " c.sendall(b);n+=len(b)\nc.close();print(n/(time.time()-t))"
)


def throughput(a: str, b: str, seconds: float = 3.0) -> float:
    server = subprocess.Popen(
        ["ip", "netns", "exec", b, sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True
    )
    time.sleep(0.3)
    rate = float(netns_exec(a, sys.executable, "-c", CLIENT, "10.99.0.2", str(seconds)))
    server.wait(60)
    return rate * 8 / 1e6


async def bench_throughput(spaces: Namespaces, state: Path) -> None:
    ns = spaces.add("tp")
    guests = VethGuests(ns, spaces.prefix)
    sw = OvsSwitch(OvsDaemons(state, netns=ns, use_system=False), guests)
    await sw.start()
    try:
        await sw.ensure_bridge(BridgeSpec("xapi1", "n1", hwaddr="02:58:00:00:00:09"))
        for i in (1, 2):
            await sw.plug_vif(VifSpec(f"vif{i}.0", "xapi1", f"02:00:00:00:09:0{i}", 1500))
            netns_exec(
                guests.guest_ns(f"vif{i}.0"), "ip", "addr", "add", f"10.99.0.{i}/24", "dev", "eth0"
            )
        a, b = guests.guest_ns("vif1.0"), guests.guest_ns("vif2.0")
        ovs = throughput(a, b)
        await sw.remove_port("vif1.0")
        await sw.remove_port("vif2.0")
        sh(["ip", "-n", ns, "link", "add", "xnbbr", "type", "bridge"])
        for i in (1, 2):
            sh(["ip", "-n", ns, "link", "set", f"vif{i}.0", "master", "xnbbr"])
        sh(["ip", "-n", ns, "link", "set", "xnbbr", "up"])
        linux = throughput(a, b)
        report(
            f"throughput  guest to guest TCP: OVS userspace bridge {ovs:.0f} Mbit/s, Linux "
            f"bridge {linux:.0f} Mbit/s (ratio {ovs / linux:.2f}; no target)"
        )
    finally:
        await sw.stop()
        guests.close()


async def main(args: argparse.Namespace) -> None:
    spaces = Namespaces(f"xnb{secrets.token_hex(1)}")
    try:
        with tempfile.TemporaryDirectory(prefix="xnb") as tmp:
            if "plug" in args.only:
                await bench_plug(spaces, Path(tmp) / "plug", args.plugs)
            if "reconcile" in args.only:
                await bench_reconcile(spaces, Path(tmp) / "rc", args.networks, args.ports)
            if "throughput" in args.only:
                await bench_throughput(spaces, Path(tmp) / "tp")
    finally:
        spaces.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--plugs", type=int, default=200)
    ap.add_argument("--networks", type=int, default=200)
    ap.add_argument("--ports", type=int, default=1000)
    ap.add_argument("--only", default="plug,reconcile,throughput")
    args = ap.parse_args()
    asyncio.run(main(args))
    print("\n".join(["", "summary:", *RESULTS]))
    _: Any = None
