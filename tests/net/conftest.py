"""The switch under test: every test here runs on the simulated switch and on Open vSwitch
(private daemons in a namespace the test makes, veth pairs standing in for guests)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from systools import require_root, require_tool

from xenstack.testing.network import SwitchKit, switch_for

PREFIX = "xn"


def need_ovs() -> None:
    for tool in ("ovs-vsctl", "ovsdb-server", "ovs-vswitchd", "ovs-ofctl", "ovsdb-tool"):
        require_tool(tool)
    require_root()


@pytest.fixture(
    params=["simulated", pytest.param("openvswitch", marks=[pytest.mark.ovs, pytest.mark.root])]
)
def kit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SwitchKit]:
    if request.param == "openvswitch":
        need_ovs()
    with switch_for(request.param, tmp_path / "state", PREFIX) as made:
        yield made


@pytest.fixture
def ovs_kit(tmp_path: Path) -> Iterator[SwitchKit]:
    need_ovs()
    with switch_for("openvswitch", tmp_path / "state", PREFIX) as made:
        yield made
