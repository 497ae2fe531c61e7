"""xenstack uses the system's Open vSwitch when one runs: with ovsdb-server answering on
``/run/openvswitch/db.sock``, ``serve --switch openvswitch`` starts no daemons of its own,
makes its bridges in the system's database, and leaves the system's daemons running when it
stops. The system switch lives in a private mount namespace (``unshare --mount``) over a
directory of the test's, so the machine's own ``/run/openvswitch`` is never used."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from systools import require_root, require_tool

pytestmark = [pytest.mark.ovs, pytest.mark.root, pytest.mark.slow]

SCENARIO = Path(__file__).with_name("system_switch_scenario.py")
SYSTEM = Path("/run/openvswitch")


def test_serve_uses_the_systems_switch_when_one_runs(tmp_path: Path) -> None:
    for tool in ("ovsdb-server", "ovs-vswitchd", "ovsdb-tool", "ovs-vsctl", "unshare"):
        require_tool(tool)
    require_root()
    made = not SYSTEM.exists()
    if made:  # the mount point (empty: outside the namespace nothing answers on it)
        SYSTEM.mkdir()
    elif any(SYSTEM.iterdir()):
        pytest.skip("this machine runs its own Open vSwitch")
    (tmp_path / "run").mkdir()
    try:
        done = subprocess.run(
            ["unshare", "--mount", "--propagation", "private",
             sys.executable, str(SCENARIO), str(tmp_path)],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        if made:
            SYSTEM.rmdir()
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["bridge"] in result["system_bridges"]  # made in the system's database
    assert result["private_daemons"] == []  # no daemons of its own
    assert result["serve_exit"] == 0
    assert result["system_alive_after_stop"] == [True, True]  # the system's are not its own
    assert result["bridge"] in result["system_bridges_after_stop"]
