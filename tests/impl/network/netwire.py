"""Helpers and fixtures (see conftest.py) for a host over the wire whose networks are real:
on the simulated switch, and on Open vSwitch in namespaces the test makes (a private switch
namespace; a "physical switch" namespace beyond the PIF, reached through a veth pair the host
was given with ``--pif``; veth pairs standing in for guests' NICs until real guests run)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import XenAPI
from systools import require_root, require_tool

from xenstack.core.config import ToolstackConfig
from xenstack.testing import RunningPool, simulated_pool
from xenstack.testing.network import PortedSimulator, SwitchKit, sh, switch_for
from xenstack.toolstack import Toolstack

PREFIX = "xn"
PIF_DEVICE = "xnp0"  # the host's given NIC, in the switch namespace
PHYS_DEVICE = "xnp0p"  # its far end, in the physical switch's namespace


@dataclass
class Host:
    pool: RunningPool
    x: Any  # a logged-in SDK xenapi proxy
    kit: SwitchKit
    phys_ns: str = ""

    @property
    def real(self) -> bool:
        return self.kit.spaces is not None

    @property
    def switch(self) -> Any:
        return self.kit.switch

    def run(self, make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """Run a coroutine on the toolstack's event loop (the switch lives there)."""
        assert self.pool.loop is not None
        return asyncio.run_coroutine_threadsafe(make(), self.pool.loop).result(120)

    def ports(self) -> dict[str, Any]:
        return dict(self.run(self.switch.ports))

    def bridges(self) -> dict[str, Any]:
        return dict(self.run(self.switch.bridges))

    def pif(self) -> str:
        """The host's first physical PIF (the given device, or the simulated eth0)."""
        device = PIF_DEVICE if self.real else "eth0"
        for ref, row in self.x.PIF.get_all_records().items():
            if row["device"] == device and row["VLAN"] == "-1":
                return str(ref)
        raise AssertionError(device)


def need_ovs() -> None:
    for tool in (
        "ovs-vsctl",
        "ovsdb-server",
        "ovs-vswitchd",
        "ovs-ofctl",
        "ovsdb-tool",
        "dnsmasq",
        "ethtool",
    ):
        require_tool(tool)
    require_root()


def start_host(kit: SwitchKit, state: Path, phys_ns: str = "") -> Iterator[Host]:
    config = ToolstackConfig(
        switch="openvswitch" if kit.spaces is not None else "simulated", netns=kit.netns
    )
    if kit.spaces is not None and not (state / "xapi.db").exists():
        made = Toolstack(state, config=config, switch=kit.switch)
        made.initialise("xenstack", pifs=(PIF_DEVICE,))
        made.persistence.close()
    with simulated_pool(
        state,
        backend=PortedSimulator(guest_agent_delay=0.05),
        switch=kit.switch,
        toolstack_config=config,
    ) as pool:
        session = XenAPI.Session(pool.url)
        session.xenapi.login_with_password("root", pool.password, "1.0", "xn-tests")
        try:
            yield Host(pool, session.xenapi, kit, phys_ns)
        finally:
            session.xenapi.session.logout()


@pytest.fixture(
    params=["simulated", pytest.param("openvswitch", marks=[pytest.mark.ovs, pytest.mark.root])]
)
def host(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Host]:
    yield from _host(request.param, tmp_path)


@pytest.fixture
def ovs_host(tmp_path: Path) -> Iterator[Host]:
    yield from _host("openvswitch", tmp_path)


def _host(kind: str, tmp_path: Path) -> Iterator[Host]:
    for kit, state, phys in _machine(kind, tmp_path):
        yield from start_host(kit, state, phys)


def _machine(kind: str, tmp_path: Path) -> Iterator[tuple[SwitchKit, Path, str]]:
    if kind == "openvswitch":
        need_ovs()
    state = tmp_path / "state"
    with switch_for(kind, state, PREFIX) as kit:
        phys = ""
        if kit.spaces is not None:
            phys = kit.spaces.add("phys")
            kit.spaces.veth(PIF_DEVICE, kit.netns, PHYS_DEVICE, phys)
        yield kit, state, phys


@pytest.fixture(
    params=["simulated", pytest.param("openvswitch", marks=[pytest.mark.ovs, pytest.mark.root])]
)
def machine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A switch, a state directory and a physical network, on which a host can be started
    (``start_host``) again and again."""
    yield from _machine(request.param, tmp_path)


def netns_has(ns: str, *argv: str) -> str:
    return sh(["ip", "netns", "exec", ns, *argv], check=False)
