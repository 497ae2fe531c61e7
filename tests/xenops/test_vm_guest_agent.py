"""The simulator's guest agents, through the backend interface: what they report, when, and
that the toolstack records it (VM_guest_metrics) with its own clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from vmkit import wait_for

from xenstack.testing import FakeClock, halted_vm, login, simulated_pool
from xenstack.xenops.interface import DomainSpec, GuestReport, HostSpec
from xenstack.xenops.simulator import SimulatorBackend

GIB = 1 << 30
DELAY = 0.02  # seconds before a simulated guest reports
SETTLE = 0.1  # long enough for every report due


def spec(vm: str, *networks: str, hint: str = "debian-12") -> DomainSpec:
    vifs = tuple(str(n) for n in range(len(networks)))
    return DomainSpec(
        vm, vm, "pv", GIB, GIB, GIB, 0, 2, 1,
        vifs=vifs, vif_networks=tuple(zip(vifs, networks, strict=True)), os_hint=hint,
    )  # fmt: skip


def run(body: Callable[[SimulatorBackend, list[GuestReport]], Awaitable[None]]) -> None:
    """Run ``body`` with a one-host simulator whose reports land in a list."""
    sim = SimulatorBackend(guest_agent_delay=DELAY)
    reports: list[GuestReport] = []
    sim.on_guest_report(reports.append)
    sim.host_add(HostSpec("h", 64 * GIB, 0, 8))
    asyncio.run(body(sim, reports))


def test_a_booted_guest_reports_its_os_drivers_addresses_and_features() -> None:
    async def body(sim: SimulatorBackend, reports: list[GuestReport]) -> None:
        info = await sim.vm_start("h", spec("vm", "net-a", "net-b"), paused=False)
        assert reports == []  # not at once: the agent takes its time
        await asyncio.sleep(SETTLE)
        (report,) = reports
        assert (report.vm_id, report.domid) == ("vm", info.domid)
        assert report.os_version["distro"] == "debian" and report.os_version["major"] == "12"
        assert report.pv_drivers_version["major"] and report.features["feature-shutdown"] == "1"
        assert set(report.networks) == {"0/ip", "0/ipv4/0", "1/ip", "1/ipv4/0"}
        assert report.networks["0/ip"].startswith("10.")
        assert report.networks["0/ip"] != report.networks["1/ip"]

    run(body)


def test_a_guest_gone_before_its_agent_reports_says_nothing() -> None:
    async def body(sim: SimulatorBackend, reports: list[GuestReport]) -> None:
        await sim.vm_start("h", spec("halted"), paused=False)
        await sim.vm_shutdown("halted", clean=True)
        await sim.vm_start("h", spec("suspended"), paused=False)
        await sim.vm_suspend("suspended")
        await sim.vm_start("h", spec("reset"), paused=False)
        sim.vm_reset("reset")
        await asyncio.sleep(SETTLE)
        assert reports == []

    run(body)


def test_reboot_and_resume_report_the_new_domain_once() -> None:
    async def body(sim: SimulatorBackend, reports: list[GuestReport]) -> None:
        await sim.vm_start("h", spec("rebooted"), paused=False)
        rebooted = await sim.vm_reboot("rebooted", True, spec("rebooted"))
        await sim.vm_start("h", spec("resumed"), paused=False)
        await sim.vm_suspend("resumed")
        resumed = await sim.vm_resume("h", "resumed", paused=False)
        await asyncio.sleep(SETTLE)
        assert sorted((r.vm_id, r.domid) for r in reports) == [
            ("rebooted", rebooted.domid),
            ("resumed", resumed.domid),
        ]

    run(body)


def test_leases_are_stable_per_interface_and_distinct_per_guest() -> None:
    async def body(sim: SimulatorBackend, reports: list[GuestReport]) -> None:
        for _ in range(2):
            await sim.vm_start("h", spec("a", "net"), paused=False)
            await sim.vm_start("h", spec("b", "net"), paused=False)
            await asyncio.sleep(SETTLE)
            await sim.vm_shutdown("a", clean=False)
            await sim.vm_shutdown("b", clean=False)
        first, second = reports[:2], reports[2:]
        assert [r.networks for r in first] == [r.networks for r in second]
        assert first[0].networks["0/ip"] != first[1].networks["0/ip"]

    run(body)


def test_the_toolstack_records_reports_with_its_clock() -> None:
    clock = FakeClock()
    with simulated_pool(clock=clock, guest_agent_delay=0) as pool:
        session = login(pool)
        x: Any = session.xenapi
        vm = halted_vm(x, "reported", **{"reference_label": "windows-10"})
        x.VM.start(vm, False, True)
        metrics = wait_for(lambda: (gm := x.VM.get_guest_metrics(vm)) != "OpaqueRef:NULL" and gm)
        record = x.VM_guest_metrics.get_record(metrics)
        assert record["os_version"]["distro"] == "windows"
        assert record["PV_drivers_up_to_date"] is True and record["other"]["feature-suspend"]
        assert str(record["last_updated"]) == "20300101T00:00:00Z"  # the fake clock's
        x.VM.hard_shutdown(vm)
        session.xenapi.session.logout()
