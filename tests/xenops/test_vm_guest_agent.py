"""The simulator's guest agents, through the backend interface: the XenStore keys they write
(as XenServer's agent does), when, and that the toolstack derives VM_guest_metrics from them
through the host's XenStore, with its own clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from vmkit import wait_for

from xenstack.testing import FakeClock, halted_vm, login, simulated_pool
from xenstack.xenops.interface import DomainSpec, HostSpec
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


class Report:
    """The keys one domain's guest wrote, in order."""

    def __init__(self, vm_id: str, domid: int) -> None:
        self.vm_id, self.domid = vm_id, domid
        self.keys: dict[str, str | None] = {}

    def under(self, prefix: str) -> dict[str, str | None]:
        return {k[len(prefix) :]: v for k, v in self.keys.items() if k.startswith(prefix)}

    @property
    def networks(self) -> dict[str, str | None]:
        return self.under("attr/vif/")


def run(body: Callable[[SimulatorBackend, list[Report]], Awaitable[None]]) -> None:
    """Run ``body`` with a one-host simulator whose guests' keys land in a list of reports
    (one per domain, in the order each first wrote)."""
    sim = SimulatorBackend(guest_agent_delay=DELAY)
    reports: list[Report] = []

    def key(vm_id: str, domid: int, name: str, value: str | None) -> None:
        if not reports or (reports[-1].vm_id, reports[-1].domid) != (vm_id, domid):
            reports.append(Report(vm_id, domid))
        reports[-1].keys[name] = value

    sim.on_guest_keys(key)
    sim.host_add(HostSpec("h", 64 * GIB, 0, 8))
    asyncio.run(body(sim, reports))


def test_a_booted_guest_reports_its_os_drivers_addresses_and_features() -> None:
    async def body(sim: SimulatorBackend, reports: list[Report]) -> None:
        info = await sim.vm_start("h", spec("vm", "net-a", "net-b"), paused=False)
        assert reports == []  # not at once: the agent takes its time
        await asyncio.sleep(SETTLE)
        (report,) = reports
        assert (report.vm_id, report.domid) == ("vm", info.domid)
        data = report.under("data/")
        assert data["os_distro"] == "debian" and data["os_majorver"] == "12"
        assert int(str(data["meminfo_total"])) == GIB // 1024
        assert report.keys["attr/PVAddons/MajorVersion"] == "9"
        assert report.keys["control/feature-shutdown"] == "1"
        assert set(report.networks) == {"0/ipv4/0", "1/ipv4/0"}
        assert str(report.networks["0/ipv4/0"]).startswith("10.")
        assert report.networks["0/ipv4/0"] != report.networks["1/ipv4/0"]
        assert list(report.keys)[-1] == "data/updated"  # last, as the agent signals a round

    run(body)


def test_a_guest_gone_before_its_agent_reports_says_nothing() -> None:
    async def body(sim: SimulatorBackend, reports: list[Report]) -> None:
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
    async def body(sim: SimulatorBackend, reports: list[Report]) -> None:
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
    async def body(sim: SimulatorBackend, reports: list[Report]) -> None:
        for _ in range(2):
            await sim.vm_start("h", spec("a", "net"), paused=False)
            await sim.vm_start("h", spec("b", "net"), paused=False)
            await asyncio.sleep(SETTLE)
            await sim.vm_shutdown("a", clean=False)
            await sim.vm_shutdown("b", clean=False)
        first, second = reports[:2], reports[2:]
        assert [r.networks for r in first] == [r.networks for r in second]
        assert first[0].networks["0/ipv4/0"] != first[1].networks["0/ipv4/0"]

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
        assert int(record["memory"]["total"]) > 0
        x.VM.hard_shutdown(vm)
        session.xenapi.session.logout()


def test_a_shutdown_request_is_acknowledged_by_clearing_it() -> None:
    async def body(sim: SimulatorBackend, reports: list[Report]) -> None:
        info = await sim.vm_start("h", spec("vm"), paused=False)
        await sim.guest_write("vm", "control/shutdown", "poweroff")
        assert (reports[0].domid, reports[0].keys) == (info.domid, {"control/shutdown": ""})

    run(body)
