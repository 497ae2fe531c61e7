"""``xenstack init --switch openvswitch --netns NS --pif DEV`` then ``serve`` as processes:
serve brings the switch options back from the state, the private daemons start under it,
the given device becomes xenbr0's PIF and nothing else is taken, OVSDB answers on the TCP
remote asked for, and SIGTERM stops the daemons (and a restart after kill -9 finds and
replaces the ones left)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import XenAPI
from systools import require_root, require_tool

from xenstack.cli.main import main, open_toolstack
from xenstack.testing import free_port
from xenstack.testing.network import namespaces, sh
from xenstack.testing.pool import ServerProcess

pytestmark = [pytest.mark.ovs, pytest.mark.root, pytest.mark.slow]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def pids(rundir: Path) -> dict[str, int]:
    found = {}
    for name in ("ovsdb-server", "ovs-vswitchd"):
        with_pid = rundir / f"{name}.pid"
        if with_pid.exists():
            found[name] = int(with_pid.read_text().strip())
    return found


def test_serve_on_a_private_open_vswitch(tmp_path: Path) -> None:
    for tool in ("ovsdb-server", "ovs-vswitchd", "ovsdb-tool", "ovs-vsctl", "ovsdb-client"):
        require_tool(tool)
    require_root()
    state = tmp_path / "s"  # short: the unix sockets live under it
    with namespaces("xn") as spaces:
        sw, phys = spaces.add("sw"), spaces.add("phys")
        spaces.veth("xnp0", sw, "xnp0p", phys)
        sh(["ip", "-n", sw, "link", "add", "xnother", "type", "veth", "peer", "name", "xnother1"])
        switch = ["--switch", "openvswitch", "--netns", sw]
        subprocess.run(
            [
                sys.executable,
                "-m",
                "xenstack.cli.main",
                "init",
                "--state-dir",
                str(state),
                *switch,
                "--pif",
                "xnp0",
            ],
            check=True,
            timeout=120,
        )
        # no switch options: the state keeps those init was given
        server = ServerProcess(state, free_port(), ["--ovsdb-tcp", "ptcp:0:127.0.0.1"])
        server.start(timeout=120)
        rundir = state / "ovs"
        try:
            running = pids(rundir)
            assert set(running) == {"ovsdb-server", "ovs-vswitchd"}
            vsctl = ["ovs-vsctl", f"--db=unix:{rundir}/db.sock"]
            assert sh([*vsctl, "port-to-br", "xnp0"]).strip() == "xenbr0"
            assert "xnother" not in sh([*vsctl, "show"])
            log = (rundir / "ovsdb-server.log").read_text()
            port = re.search(r"127\.0\.0\.1: listening on port (\d+)", log)
            assert port is not None
            dbs = sh(["ovsdb-client", "list-dbs", f"tcp:127.0.0.1:{port.group(1)}"])
            assert "Open_vSwitch" in dbs
            session = XenAPI.Session(server.url)
            session.xenapi.login_with_password("root", server.password, "1.0", "xn")
            devices = {r["device"] for r in session.xenapi.PIF.get_all_records().values()}
            assert devices == {"xnp0"}
            session.xenapi.session.logout()
            # kill -9: the daemons stay; a restart replaces them
            server.kill()
            assert all(alive(p) for p in running.values())
            server.start(timeout=120)
            restarted = pids(rundir)
            assert not any(alive(p) for p in running.values())
            assert sh([*vsctl, "port-to-br", "xnp0"]).strip() == "xenbr0"
        finally:
            assert server.stop() == 0
        deadline = time.monotonic() + 60
        while any(alive(p) for p in restarted.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(p) for p in restarted.values())


def test_init_keeps_the_switch_options_for_serve(tmp_path: Path) -> None:
    """As the backend: what init was told comes back when nothing else is said, and an
    option given later wins over the state."""
    state = tmp_path / "kept"
    opts = ["--switch", "openvswitch", "--netns", "n4kept", "--ovsdb-tcp", "ptcp:0:127.0.0.1"]
    assert main(["init", "--state-dir", str(state), *opts]) == 0
    args = parser_args("serve", "--state-dir", str(state))
    again = open_toolstack(state, args)
    try:
        assert again.switch.kind == "openvswitch"
        assert (again.config.switch, again.config.netns) == ("openvswitch", "n4kept")
        assert again.config.ovsdb_tcp == "ptcp:0:127.0.0.1"
        assert again.switch.netns == "n4kept"
    finally:
        again.persistence.close()
    other = open_toolstack(state, parser_args("serve", "--state-dir", str(state), "--netns", "n4x"))
    try:
        assert (other.config.switch, other.config.netns) == ("openvswitch", "n4x")
    finally:
        other.persistence.close()
    plain = tmp_path / "plain"
    assert main(["init", "--state-dir", str(plain)]) == 0
    simulated = open_toolstack(plain, parser_args("serve", "--state-dir", str(plain)))
    try:
        assert simulated.switch.kind == "simulated" and simulated.config.netns == ""
    finally:
        simulated.persistence.close()


def parser_args(*argv: str) -> object:
    from xenstack.cli.main import parser

    return parser().parse_args(list(argv))
