"""``xenstack``: create a host's state and serve it.

xenstack init  --state-dir DIR [--password-file FILE] [--hosts N] [--shared-sr] [--sim-storage]
xenstack serve --state-dir DIR [--listen 127.0.0.1] [--port 8080] [--socket PATH] [--https-port N]
               [--hosts N] [--shared-sr] [--sim-storage]   (these apply when serve initialises DIR)
               [--max-connections N] [--max-connections-per-peer N] [--head-timeout S]
               [--request-timeout S]                       (the front door's limits)
xenstack user-add --state-dir DIR NAME --role ROLE --password-file FILE
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
import logging
import os
import signal
import sys
from pathlib import Path

from ..core.config import from_environment
from ..idl.model import ROLES
from ..rpc.http import HttpConfig
from ..toolstack import Toolstack, write_secret
from . import top


def _read_password(path: str) -> str:
    text = Path(path).read_text().strip()
    if not text:
        raise SystemExit(f"xenstack: {path} holds no password")
    return text


def open_toolstack(state_dir: Path) -> Toolstack:
    """The toolstack of DIR, configured from the environment."""
    return Toolstack(state_dir, config=from_environment(os.environ))


def init_state(state_dir: Path, args: argparse.Namespace) -> Toolstack:
    """Initialise DIR as the options say, if it is not yet; return the toolstack."""
    toolstack = open_toolstack(state_dir)
    if toolstack.initialised:
        return toolstack
    password_file = args.password_file
    password = toolstack.initialise(
        _read_password(password_file) if password_file else None,
        args.hosts,
        shared_sr=args.shared_sr,
        sim_storage=args.sim_storage,
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
    toolstack = open_toolstack(state_dir)
    if toolstack.initialised:
        toolstack.persistence.close()
        print(f"xenstack: {state_dir} is initialised already", file=sys.stderr)
        return 1
    toolstack.persistence.close()
    init_state(state_dir, args).persistence.close()
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    toolstack = open_toolstack(state_path(args.state_dir))
    toolstack.auth.set_user(args.name, _read_password(args.password_file), args.role)
    toolstack.persistence.close()
    return 0


async def _serve(args: argparse.Namespace) -> None:
    state_dir = state_path(args.state_dir)
    toolstack = init_state(state_dir, args)
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
    await toolstack.start(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ports = toolstack.server.ports if toolstack.server else {}
    logging.getLogger("xenstack").info("serving on %s %s", args.listen, ports)
    print(f"xenstack: serving {state_dir} on {args.listen} {ports}", flush=True)
    await stop.wait()
    await toolstack.stop()


def cmd_serve(args: argparse.Namespace) -> int:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(_serve(args))
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("a pool has at least one host")
    return value


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
    _add_pool_options(serve)
    serve.set_defaults(func=cmd_serve)
    user = sub.add_parser("user-add", help="add a local user with a role")
    user.add_argument("--state-dir", required=True)
    user.add_argument("name")
    user.add_argument("--role", choices=ROLES, default="read-only")
    user.add_argument("--password-file", required=True)
    user.set_defaults(func=cmd_user_add)
    top.add_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    os.umask(0o077)  # the state's files, certificates and disks are private from the start
    args = parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
