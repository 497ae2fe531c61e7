"""Run inside a private mount namespace by test_system_switch.py: a "system" Open vSwitch on
the system's socket path (``/run/openvswitch``, a directory of the test's bound there, so
nothing outside the namespace sees it), then ``xenstack init`` + ``serve`` with
``--switch openvswitch``. Prints what the test checks, as JSON, on its last line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import XenAPI

from xenstack.testing import free_port
from xenstack.testing.network import sh
from xenstack.testing.pool import ServerProcess

SYSTEM = Path("/run/openvswitch")


def system_switch(work: Path) -> list[int]:
    """ovsdb-server and ovs-vswitchd as a distribution starts them, on SYSTEM; their pids."""
    subprocess.run(["mount", "--bind", str(work / "run"), str(SYSTEM)], check=True)
    db = work / "conf.db"
    sh(["ovsdb-tool", "create", str(db), "/usr/share/openvswitch/vswitch.ovsschema"])
    common = ["--detach", "--no-chdir"]
    sh(["ovsdb-server", str(db), f"--remote=punix:{SYSTEM}/db.sock", *common,
        f"--pidfile={work}/ovsdb-server.pid", f"--log-file={work}/ovsdb-server.log"])  # fmt: skip
    sh(["ovs-vsctl", f"--db=unix:{SYSTEM}/db.sock", "--no-wait", "init"])
    sh(["ovs-vswitchd", f"unix:{SYSTEM}/db.sock", *common,
        f"--pidfile={work}/ovs-vswitchd.pid", f"--log-file={work}/ovs-vswitchd.log"])  # fmt: skip
    return [int((work / f"{n}.pid").read_text()) for n in ("ovsdb-server", "ovs-vswitchd")]


def main(work: Path) -> None:
    pids = system_switch(work)
    state = work / "s"
    result: dict[str, object] = {}
    try:
        init = [sys.executable, "-m", "xenstack.cli.main", "init", "--state-dir", str(state)]
        subprocess.run([*init, "--switch", "openvswitch"], check=True, timeout=120)
        server = ServerProcess(state, free_port())
        server.start(timeout=120)
        try:
            session = XenAPI.Session(server.url)
            session.xenapi.login_with_password("root", server.password, "1.0", "t")
            x = session.xenapi
            physical = [n for n in x.network.get_all() if x.network.get_PIFs(n)]
            bridge = x.network.get_bridge(physical[0])  # a PIF's network: made at start
            vsctl = ["ovs-vsctl", f"--db=unix:{SYSTEM}/db.sock"]
            result["bridge"] = bridge
            result["system_bridges"] = sh([*vsctl, "list-br"]).split()
            result["private_daemons"] = sorted(p.name for p in (state / "ovs").glob("*.pid"))
            session.xenapi.session.logout()
        finally:
            result["serve_exit"] = server.stop()
        result["system_alive_after_stop"] = [os.path.exists(f"/proc/{p}") for p in pids]
        result["system_bridges_after_stop"] = sh([*vsctl, "list-br"]).split()
    finally:
        for pid in pids:
            subprocess.run(["kill", str(pid)], check=False)
    print(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
