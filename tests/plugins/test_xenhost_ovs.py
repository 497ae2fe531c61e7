"""``xenhost.py network_config`` making real Open vSwitch ports: a private ovsdb-server and
ovs-vswitchd (userspace datapath) in a network namespace of the test's own, reached by the
plug-ins through the environment the toolstack gives them (``plugin_env``: OVS_RUNDIR)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI
from pluginkit import call_serialized
from systools import require_root, require_tool

from xenstack.core.config import ToolstackConfig
from xenstack.testing import simulated_pool

pytestmark = [pytest.mark.ovs, pytest.mark.root]


def _run(*cmd: str, **kw: Any) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60, **kw).stdout


@pytest.fixture
def switch() -> Iterator[Path]:
    """A private switch with bridge ``xsbr0``; everything started is stopped by its pid."""
    require_root()
    for tool in ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl"):
        require_tool(tool)
    rundir = Path(tempfile.mkdtemp(prefix="xsovs"))
    ns = f"xsovs{os.getpid()}"
    env = {**os.environ, "OVS_RUNDIR": str(rundir)}
    _run("ip", "netns", "add", ns)
    try:
        _run(
            "ovsdb-tool", "create", f"{rundir}/conf.db", "/usr/share/openvswitch/vswitch.ovsschema"
        )
        _run("ip", "netns", "exec", ns, "ovsdb-server", f"{rundir}/conf.db",
             f"--remote=punix:{rundir}/db.sock", f"--pidfile={rundir}/ovsdb-server.pid",
             f"--unixctl={rundir}/ovsdb-server.ctl", "--detach", env=env)  # fmt: skip
        _run("ovs-vsctl", f"--db=unix:{rundir}/db.sock", "--no-wait", "init")
        _run("ip", "netns", "exec", ns, "ovs-vswitchd", f"unix:{rundir}/db.sock",
             f"--pidfile={rundir}/ovs-vswitchd.pid", f"--unixctl={rundir}/ovs-vswitchd.ctl",
             f"--log-file={rundir}/ovs-vswitchd.log", "--detach", env=env)  # fmt: skip
        _run("ovs-vsctl", f"--db=unix:{rundir}/db.sock", "--timeout=30", "add-br", "xsbr0",
             "--", "set", "bridge", "xsbr0", "datapath_type=netdev")  # fmt: skip
        yield rundir
    finally:
        for name in ("ovs-vswitchd", "ovsdb-server"):
            pidfile = rundir / f"{name}.pid"
            if pidfile.exists():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=60)
        shutil.rmtree(rundir, ignore_errors=True)


def vsctl(rundir: Path, *args: str) -> str:
    return _run("ovs-vsctl", f"--db=unix:{rundir}/db.sock", "--timeout=30", *args).strip()


def test_network_config_makes_real_ports(switch: Path, tmp_path: Path) -> None:
    config = ToolstackConfig(plugin_env=(("OVS_RUNDIR", str(switch)),))
    with simulated_pool(tmp_path / "state", toolstack_config=config) as pool:
        session = XenAPI.Session(pool.url)
        session.xenapi.login_with_password("root", pool.password, "1.0", "xs-tests")
        x: Any = session.xenapi
        host = x.host.get_all()[0]

        def network_config(cmd: str, **args: str) -> Any:
            """os-xenapi's host_network: call_plugin_serialized with {cmd, args}."""
            return call_serialized(x, host, "xenhost.py", "network_config",
                                   {"cmd": cmd, "args": args})  # fmt: skip

        network_config("ovs_create_port", bridge="xsbr0", port="xsint0", mac="aa:bb:cc:00:00:01",
                       status="active", **{"iface-id": "port-1"})  # fmt: skip
        assert vsctl(switch, "list-ports", "xsbr0").split() == ["xsint0"]
        ids = vsctl(switch, "get", "interface", "xsint0", "external_ids")
        assert "iface-id=port-1" in ids.replace('"', "") and "attached-mac" in ids
        network_config("ovs_add_port", bridge_name="xsbr0", port_name="xsplain0")
        assert "xsplain0" in vsctl(switch, "list-ports", "xsbr0").split()
        network_config("ovs_add_patch_port", bridge_name="xsbr0", port_name="xspatch0",
                       peer_port_name="xspeer")  # fmt: skip
        assert vsctl(switch, "get", "interface", "xspatch0", "options:peer") == "xspeer"
        network_config("ovs_set_if_external_id", interface="xsint0", extneral_id="iface-id",
                       value="vif-1")  # fmt: skip
        assert (
            vsctl(switch, "get", "interface", "xsint0", "external-ids:iface-id").strip('"')
            == "vif-1"
        )
        network_config("ovs_del_port", bridge_name="xsbr0", port_name="xsint0")
        network_config("ovs_del_port", bridge_name="xsbr0", port_name="xsplain0")
        assert vsctl(switch, "list-ports", "xsbr0").split() == ["xspatch0"]
        session.xenapi.session.logout()
