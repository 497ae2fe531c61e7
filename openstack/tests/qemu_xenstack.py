"""A real xenstack host for the OpenStack tests (run by the project's interpreter,
XENSTACK_PYTHON, as root): ``xenstack init --backend qemu --switch openvswitch`` and
``xenstack serve`` with its QEMUs, taps and private Open vSwitch in an ``n3``-prefixed
network namespace, its OVSDB also on ``ptcp:0:127.0.0.1`` (reached from inside the
namespace through a TCP relay, as in ``ovs_xenstack.py``), and DHCP beyond its only PIF:
untagged, and on VLAN 1000 (the provider segment neutron's agent translates to).

It is the integration tests' OVS qemu host (``tests/integration/integkit.py``: the physical
switch beyond the PIF, its dnsmasqs) served with the extra OVSDB remote. Prints one JSON line
``{"url", "password", "state", "netns", "ovsdb", "ovsdb_in_ns", "rundir", "leases"}`` once
serving, then serves until its stdin closes; everything it made goes with it, by id.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "integration"))

import integkit  # noqa: E402
from ovs_xenstack import listen_in, ovsdb_port, relay  # noqa: E402

from xenstack.testing.guests import guest_image_dir, stop_guests  # noqa: E402
from xenstack.testing.network import Namespaces, sh  # noqa: E402
from xenstack.testing.pool import ServerProcess, free_port  # noqa: E402

PREFIX = "n3"
PROVIDER_VLAN = 1000


def main() -> None:
    integkit.PREFIX = PREFIX  # the names this helper makes
    guest_image_dir()
    spaces = Namespaces(PREFIX)
    segments: dict[int, integkit.Segment] = {}
    server: ServerProcess | None = None
    with tempfile.TemporaryDirectory(prefix="n3-") as tmp:
        os.chmod(tmp, 0o711)  # QEMU runs as a user of its own under a root toolstack
        state = Path(tmp) / "s"
        try:
            sw = spaces.add("sw")
            sh(["ip", "netns", "exec", sw, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])
            pif, far = f"{spaces.prefix}p", f"{spaces.prefix}q"
            spaces.veth(pif, sw, far, sw)
            cli = [sys.executable, "-m", "xenstack.cli.main"]
            switch = ["--switch", "openvswitch", "--netns", sw]
            init = [*cli, "init", "--state-dir", str(state), "--backend", "qemu", *switch]
            subprocess.run([*init, "--pif", pif], check=True, timeout=180, capture_output=True)
            server = ServerProcess(state, free_port(), [*switch, "--ovsdb-tcp", "ptcp:0:127.0.0.1"])
            server.start(timeout=180)
            host = integkit.OvsQemuHost(server, state, sw, "", pif, segments)
            integkit._physical_switch(host, spaces, far, (0, PROVIDER_VLAN), Path(tmp))
            rundir = state / "ovs"
            port = ovsdb_port(rundir)
            listener = listen_in(sw)
            threading.Thread(target=relay, args=(listener, port), daemon=True).start()
            info = {
                "url": server.url,
                "password": server.password,
                "state": str(state),
                "netns": sw,
                "ovsdb": port,
                "ovsdb_in_ns": listener.getsockname()[1],
                "rundir": str(rundir),
                "leases": {str(v): str(s.leases) for v, s in segments.items()},
                "subnets": {str(v): s.subnet for v, s in segments.items()},
            }
            print(json.dumps(info), flush=True)
            sys.stdin.read()
            listener.close()
        finally:
            if server is not None:
                server.stop()
            stop_guests(state)
            for seg in segments.values():
                integkit._kill_pidfile(seg.pidfile)
            spaces.close()


if __name__ == "__main__":
    main()
