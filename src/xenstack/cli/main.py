"""``xenstack``: create a host's state and serve it.

xenstack init  --state-dir DIR [--password-file FILE] [--hosts N] [--shared-sr] [--sim-storage]
               [--switch simulated|openvswitch] [--netns NAME] [--pif DEV ...]
xenstack serve --state-dir DIR [--listen 127.0.0.1] [--port 8080] [--socket PATH] [--https-port N]
               [--hosts N] [--shared-sr] [--sim-storage]   (these apply when serve initialises DIR)
               [--max-connections N] [--max-connections-per-peer N] [--head-timeout S]
               [--request-timeout S]                       (the front door's limits)
               [--switch KIND] [--netns NAME] [--ovsdb-tcp ptcp:6640:ADDR]  (the switch)
               [--etcd URL[,URL...]] [--master-lease S]    (the pool's database in etcd)
               [--domain-log FILE]                         (when each domain ran where)
xenstack user-add --state-dir DIR NAME --role ROLE --password-file FILE
xenstack doctor network --state-dir DIR --vm NAME [--vif UUID] [--json] [--interval S]
xenstack pool handover --to HOST [--url URL] [--user root] --password-file FILE
xenstack chaos run FILE                                    (a fault-injection scenario)
xenstack ha-daemon --state-dir DIR                         (a QEMU host's HA daemon: by serve)
xenstack top   [--server URL] [--state-dir DIR | --password-file FILE] [--interval S] [--once]
               (a live view of the host and its VMs from /rrd_updates, as xentop: cli/top.py)

The environment configures what no option does: XENSTACK_GUEST_AGENT_DELAY (seconds before a
simulated guest reports), XENSTACK_PLUGIN_TIMEOUT, XENSTACK_PLUGIN_DIR and
XENSTACK_EXTENSION_DIR (extra directories, separated by ``os.pathsep``). They are read here
alone, into the toolstack's configuration.

DIR is taken as an absolute path (the state stores paths under it). Everything these commands
create is their owner's alone (umask 077): the state holds password hashes, keys and disks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from ..core.config import from_environment, remembered
from ..errors import ApiError
from ..idl.model import ROLES
from ..net import SwitchError
from ..rpc.http import HttpConfig
from ..toolstack import (
    BACKENDS,
    Toolstack,
    open_etcd_persistence,
    open_persistence,
    write_secret,
)
from . import ha_daemon, handover, top
from .dom0 import commands as dom0_commands

STOP_WITHIN = 15.0  # seconds a stopping toolstack may take


def _read_password(path: str) -> str:
    text = Path(path).read_text().strip()
    if not text:
        raise SystemExit(f"xenstack: {path} holds no password")
    return text


def open_toolstack(state_dir: Path, args: argparse.Namespace | None = None) -> Toolstack:
    """The toolstack of DIR, configured from the environment and the options: the switch's;
    the database in etcd when ``--etcd`` names the cluster's URLs; every domain's life
    journaled in ``--domain-log``."""
    config = from_environment(os.environ)
    changes = {
        name: getattr(args, name)
        for name in ("backend", "switch", "netns", "ovsdb_tcp")
        if args is not None and getattr(args, name, None)
    }
    etcd = getattr(args, "etcd", "") or ""
    domain_log = getattr(args, "domain_log", "") or ""
    return Toolstack(
        state_dir,
        config=dataclasses.replace(config, **changes),
        persistence=open_etcd_persistence(state_dir, etcd) if etcd else None,
        domain_log=Path(domain_log) if domain_log else None,
    )


def init_state(state_dir: Path, args: argparse.Namespace) -> Toolstack:
    """Initialise DIR as the options say, if it is not yet; return the toolstack."""
    toolstack = open_toolstack(state_dir, args)
    if toolstack.initialised:
        return toolstack
    password_file = args.password_file
    password = toolstack.initialise(
        _read_password(password_file) if password_file else None,
        args.hosts,
        shared_sr=args.shared_sr,
        sim_storage=args.sim_storage,
        pifs=tuple(getattr(args, "pif", None) or ()),
    )
    if not password_file:
        write_secret(state_dir / "root-password", password)
    return toolstack


def state_path(text: str) -> Path:
    """The state directory as an absolute path (not resolving links), so that a state made
    from one directory is served from any other."""
    return Path(os.path.abspath(text))


def cmd_init(args: argparse.Namespace) -> int:
    state_dir = state_path(args.state_dir)
    toolstack = open_toolstack(state_dir, args)
    if toolstack.initialised:
        toolstack.persistence.close()
        print(f"xenstack: {state_dir} is initialised already", file=sys.stderr)
        return 1
    toolstack.persistence.close()
    init_state(state_dir, args).persistence.close()
    return 0


def cmd_doctor_network(args: argparse.Namespace) -> int:
    """Check a VM's VIFs on the Open vSwitch of DIR's running host; 0 when all is well."""
    from ..impl.network import doctor
    from ..net.doctor import render
    from ..net.ovs import OvsDaemons, OvsSwitch

    state_dir = state_path(args.state_dir)
    persistence = open_persistence(state_dir)  # the state says which namespace
    config = remembered(from_environment(os.environ), persistence.get_meta)
    switch = OvsSwitch(OvsDaemons(state_dir, netns=config.netns, use_system=args.system_switch))
    toolstack = Toolstack(state_dir, config=config, switch=switch, persistence=persistence)

    async def run() -> list[Any]:
        try:
            await switch.attach()
        except SwitchError as exc:
            raise SystemExit(
                f"xenstack: {exc}: is `xenstack serve --switch openvswitch` running on "
                f"{state_dir}? (a simulated switch lives in its server: use xe network-doctor)"
            ) from None
        try:
            return await doctor.run(toolstack, args.vm, args.vif or "", args.interval)
        finally:
            await switch.detach()  # the daemons are the server's

    try:
        reports = asyncio.run(run())
    except ApiError as err:
        print(f"xenstack: {err.code} {' '.join(map(str, err.params))}", file=sys.stderr)
        return 2
    finally:
        toolstack.persistence.close()
    if args.json:
        sys.stdout.write(doctor.as_json(reports).decode() + "\n")
    else:
        print(render(reports))
    return 0 if all(r.healthy for r in reports) else 1


def cmd_user_add(args: argparse.Namespace) -> int:
    toolstack = open_toolstack(state_path(args.state_dir))
    toolstack.auth.set_user(args.name, _read_password(args.password_file), args.role)
    toolstack.persistence.close()
    return 0


def _own_address(toolstack: Toolstack, listen: str) -> None:
    """A host served on one address of its own (not loopback, not every address) is known
    by it in its pool: members and masters reach each other there."""
    if listen in ("127.0.0.1", "0.0.0.0", "::", "localhost") or toolstack.master_address:
        return
    db = toolstack.db
    if db.exists("host", toolstack.this_host) and (
        db.get("host", toolstack.this_host)["address"] != listen
    ):
        with db.transaction():
            db.set("host", toolstack.this_host, "address", listen)


async def _serve(args: argparse.Namespace) -> bool:
    """Serve until told to stop; True if this process must re-execute itself.

    An election (this host elected master, or no longer master) restarts the toolstack on
    the database it now serves: in this process, whose modules are loaded already (a
    re-execution costs seconds of interpreter start-up, the better part of a takeover), or
    by re-executing when the old toolstack did not stop in time."""
    terminated: list[bool] = []
    while True:
        again = await _serve_once(args, terminated)
        if again != "again" or terminated:
            return again == "exec" and not terminated


async def _serve_once(args: argparse.Namespace, terminated: list[bool]) -> str:
    """One toolstack's life: "stop", "again" (serve again: elected) or "exec"."""
    state_dir = state_path(args.state_dir)
    toolstack = init_state(state_dir, args)
    _own_address(toolstack, args.listen)
    config = HttpConfig(
        listen=args.listen,
        port=args.port,
        socket_path=Path(args.socket) if args.socket else None,
        idle_timeout=args.idle_timeout,
        max_connections=args.max_connections,
        max_connections_per_peer=args.max_connections_per_peer,
        head_timeout=args.head_timeout,
        request_timeout=args.request_timeout,
    )
    if args.https_port is not None:
        from ..core.tls import ensure_certificate

        config.tls_cert, config.tls_key = ensure_certificate(state_dir / "tls")
        config.tls_port = args.https_port
    stop = asyncio.Event()
    restart: list[bool] = []

    def again() -> None:
        restart.append(True)
        stop.set()

    toolstack.restart = again
    toolstack.master_lease = args.master_lease
    await toolstack.start(config)
    loop = asyncio.get_running_loop()

    def terminate() -> None:
        terminated.append(True)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, terminate)
    if terminated:  # a signal came while the toolstack restarted
        stop.set()
    ports = toolstack.server.ports if toolstack.server else {}
    logging.getLogger("xenstack").info("serving on %s %s", args.listen, ports)
    print(f"xenstack: serving {state_dir} on {args.listen} {ports}", flush=True)
    await stop.wait()
    try:
        await asyncio.wait_for(toolstack.stop(), STOP_WITHIN)
    except TimeoutError:  # etcd gone, say: what was acknowledged is safe, go
        logging.getLogger("xenstack").error("stopping took too long; leaving now")
        if not restart:
            os._exit(1)
        return "exec"  # what did not stop is left to the old process image
    return "again" if restart else "stop"


def cmd_serve(args: argparse.Namespace) -> int:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if asyncio.run(_serve(args)):
        os.execv(sys.executable, [sys.executable, "-m", "xenstack.cli.main", *sys.argv[1:]])
    return 0


def cmd_chaos(args: argparse.Namespace) -> int:
    """The runner is part of the test kit (it starts hosts and etcd): run it as a child, as
    the kit sits above the command line."""
    import subprocess

    cmd = [sys.executable, "-m", "xenstack.testing.chaos", args.verb, args.file]
    return subprocess.run(cmd, check=False).returncode


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("a pool has at least one host")
    return value


def _add_switch_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--switch",
        choices=("simulated", "openvswitch"),
        help="the virtual switch (default simulated; XENSTACK_SWITCH); init keeps it, and "
        "--netns and --ovsdb-tcp, in the state for serve",
    )
    sub.add_argument("--netns", help="the network namespace of the switch and the guests' taps")
    sub.add_argument(
        "--ovsdb-tcp",
        metavar="REMOTE",
        help="also serve the private switch's OVSDB on this remote, e.g. ptcp:6640:127.0.0.1 "
        "(for neutron's agent; XENSTACK_OVSDB_TCP)",
    )
    sub.add_argument(
        "--pif",
        action="append",
        metavar="DEV",
        help="a kernel network device to make a PIF (repeat for more); no other is ever "
        "taken into a bridge",
    )


def _add_pool_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--hosts", type=_positive, default=1, help="hosts in a fresh pool")
    sub.add_argument(
        "--sim-storage",
        action="store_true",
        help=(
            "sizes-only simulated storage (no files; for very large simulated pools); without"
            " it SRs keep real VHD files under DIR/sr/"
        ),
    )
    sub.add_argument(
        "--backend",
        choices=BACKENDS,
        help="the hypervisor: simulator (the default) or qemu (real guests); kept in the state",
    )
    sub.add_argument(
        "--shared-sr",
        action="store_true",
        help="add a shared NFS-like SR that every host of the pool sees",
    )


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="xenstack", description="A XenServer-compatible toolstack")
    sub = ap.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="create the state of a host")
    init.add_argument("--state-dir", required=True)
    init.add_argument("--password-file")
    _add_pool_options(init)
    _add_switch_options(init)
    init.set_defaults(func=cmd_init)
    serve = sub.add_parser("serve", help="serve the XenAPI until SIGTERM")
    serve.add_argument("--state-dir", required=True)
    serve.add_argument("--password-file")
    serve.add_argument("--listen", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--socket")
    serve.add_argument("--https-port", type=int)
    serve.add_argument("--idle-timeout", type=float, default=60.0)
    # the front door's limits (docs/security.md); defaults as HttpConfig's
    serve.add_argument("--max-connections", type=_positive, default=HttpConfig.max_connections)
    serve.add_argument(
        "--max-connections-per-peer", type=_positive, default=HttpConfig.max_connections_per_peer
    )
    serve.add_argument("--head-timeout", type=float, default=HttpConfig.head_timeout)
    serve.add_argument("--request-timeout", type=float, default=HttpConfig.request_timeout)
    serve.add_argument("--etcd", default="", help="keep the database in etcd (URL[,URL...])")
    serve.add_argument("--domain-log", default="", help="journal every domain's life here")
    serve.add_argument(
        "--master-lease", type=float, default=5.0, help="seconds of an etcd master's lease"
    )
    _add_pool_options(serve)
    _add_switch_options(serve)
    serve.set_defaults(func=cmd_serve)
    user = sub.add_parser("user-add", help="add a local user with a role")
    user.add_argument("--state-dir", required=True)
    user.add_argument("name")
    user.add_argument("--role", choices=ROLES, default="read-only")
    user.add_argument("--password-file", required=True)
    user.set_defaults(func=cmd_user_add)
    doctor = sub.add_parser("doctor", help="diagnose a host's state")
    checks = doctor.add_subparsers(dest="area", required=True)
    network = checks.add_parser("network", help="check a VM's network interfaces on the switch")
    network.add_argument("--state-dir", required=True)
    network.add_argument("--vm", required=True, help="the VM's name or uuid")
    network.add_argument("--vif", help="only the VIF with this uuid")
    network.add_argument("--json", action="store_true", help="the report as JSON, for tools")
    network.add_argument(
        "--interval", type=float, default=1.0, help="seconds to watch the ports' packet counters"
    )
    network.add_argument(
        "--system-switch",
        action="store_true",
        default=None,
        help="the system's Open vSwitch rather than DIR's private one",
    )
    network.set_defaults(func=cmd_doctor_network)
    dom0_commands.add(sub)
    handover.add_parser(sub)
    chaos = sub.add_parser("chaos", help="fault-injection scenarios (xenstack chaos run FILE)")
    chaos.add_argument("verb", choices=["run"])
    chaos.add_argument("file")
    chaos.set_defaults(func=cmd_chaos)
    top.add_parser(sub)
    ha_daemon.add_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    os.umask(0o077)  # the state's files, certificates and disks are private from the start
    args = parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
