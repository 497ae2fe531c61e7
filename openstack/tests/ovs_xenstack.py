"""A xenstack host on a private Open vSwitch, for the neutron test (run by the project's
interpreter, XENSTACK_PYTHON, as root): the switch's daemons in a network namespace of
their own (``xo``-prefixed), OVSDB also on ``ptcp:0:127.0.0.1`` inside it, and simulated
guests whose VIFs are veth stand-ins, so that starting a VM makes its ``vifN.M`` port.

The switch's ovsdb-server runs in this namespace and its TCP remote listens here, while
ovs-vswitchd (whose bridges call the agent's OpenFlow controller on 127.0.0.1) runs in the
switch's namespace: an agent run there reaches xenstack's TCP remote through a plain TCP relay
listening on 127.0.0.1 inside the switch's namespace (``ovsdb_in_ns``).

Prints one JSON line ``{"url", "password", "netns", "ovsdb", "ovsdb_in_ns", "rundir"}`` once
serving, then serves until its stdin closes; everything it made (namespace, daemons, veths)
goes with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import socket
import sys
import threading
import time
from pathlib import Path

from xenstack.testing import simulated_pool
from xenstack.testing.network import PortedSimulator, switch_for


def ovsdb_port(rundir: Path, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = rundir / "ovsdb-server.log"
        found = (
            re.search(r"127\.0\.0\.1: listening on port (\d+)", log.read_text())
            if (log.exists())
            else None
        )
        if found:
            return int(found.group(1))
        time.sleep(0.1)
    raise TimeoutError("ovsdb-server did not listen on TCP")


CLONE_NEWNET = 0x40000000


def listen_in(netns: str) -> socket.socket:
    """A TCP socket listening on 127.0.0.1 (a free port) inside ``netns``."""
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        try:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen()
        finally:
            if libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(own)
        os.close(target)
    return sock


def _pipe(a: socket.socket, b: socket.socket) -> None:
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def relay(listener: socket.socket, port: int) -> None:
    """Each connection accepted in the namespace, joined to 127.0.0.1:``port`` here."""
    while True:
        try:
            inside, _ = listener.accept()
        except OSError:
            return
        outside = socket.create_connection(("127.0.0.1", port), 30)
        outside.settimeout(None)
        for a, b in ((inside, outside), (outside, inside)):
            threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def main() -> None:
    state = Path(sys.argv[1])
    with switch_for("openvswitch", state / "sw", "xo") as kit:
        kit.switch.daemons.ovsdb_tcp = "ptcp:0:127.0.0.1"
        with simulated_pool(
            state / "xs", backend=PortedSimulator(), switch=kit.switch, guest_agent_delay=0
        ) as pool:
            port = ovsdb_port(Path(kit.switch.daemons.rundir))
            listener = listen_in(kit.netns)
            threading.Thread(target=relay, args=(listener, port), daemon=True).start()
            info = {
                "url": pool.url,
                "password": pool.password,
                "netns": kit.netns,
                "ovsdb": port,
                "ovsdb_in_ns": listener.getsockname()[1],
                "rundir": str(kit.switch.daemons.rundir),
            }
            print(json.dumps(info), flush=True)
            sys.stdin.read()
            listener.close()


if __name__ == "__main__":
    main()
