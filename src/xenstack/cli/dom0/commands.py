"""``xenstack plugins install`` and ``xenstack shell``: an administrator's dom0.

``plugins install --state-dir DIR FILE...`` copies host plug-ins (``--extension``: host
extensions) into the state directory, where ``host.call_plugin`` finds them before the
bundled ones. ``shell --state-dir DIR [-c COMMAND]`` runs a shell with the environment a
plug-in gets: the dom0 tools first on ``PATH``, ``XENSTORED_PATH``, the inventory facts of
``DIR/xensource-inventory`` (written by the toolstack when it starts) and ``xe`` pointed at
the state's toolstack.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from ...plugins import runner


def add(sub: Any) -> None:
    """Add the ``plugins`` and ``shell`` commands to ``xenstack``'s subparsers."""
    plugins = sub.add_parser("plugins", help="manage the host plug-ins of a state")
    actions = plugins.add_subparsers(dest="action", required=True)
    install = actions.add_parser("install", help="install host plug-ins into the state")
    install.add_argument("--state-dir", required=True)
    install.add_argument("--extension", action="store_true", help="a host extension")
    install.add_argument("files", nargs="+")
    install.set_defaults(func=cmd_install)
    shell = sub.add_parser("shell", help="a dom0 shell: the plug-ins' environment")
    shell.add_argument("--state-dir", required=True)
    shell.add_argument("--port", type=int, help="the toolstack's HTTP port (default 8080)")
    shell.add_argument("-c", dest="command", help="run COMMAND and exit")
    shell.set_defaults(func=cmd_shell)


def cmd_install(args: argparse.Namespace) -> int:
    target = Path(args.state_dir) / ("extensions" if args.extension else "plugins")
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in args.files:
        source = Path(name)
        if not runner.valid_name(source.name) or not source.is_file():
            sys.stderr.write(f"not a plug-in file: {name}\n")
            return 1
        dest = target / source.name
        tmp = dest.with_name(f".{source.name}.tmp")
        shutil.copyfile(source, tmp)
        os.chmod(tmp, 0o700)
        os.replace(tmp, dest)
        print(dest)
    return 0


def read_inventory(path: Path) -> dict[str, str]:
    facts: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return facts
    for line in text.splitlines():
        key, eq, value = line.partition("=")
        if eq and key.strip():
            parts = shlex.split(value)
            facts[key.strip()] = parts[0] if parts else ""
    return facts


def shell_env(state: Path, port: int | None) -> dict[str, str]:
    env = runner.child_env("", read_inventory(state / "xensource-inventory"))
    env["HOME"] = os.environ.get("HOME", "/")
    env["TERM"] = os.environ.get("TERM", "dumb")
    env["XENSTACK_STATE_DIR"] = str(state)
    env["XENSTORED_PATH"] = str(state / "run" / "xenstored" / "socket")
    env["XENSTACK_INVENTORY"] = str(state / "xensource-inventory")
    if port is not None:
        env["XE_EXTRA_ARGS"] = f"server=127.0.0.1,port={port}"
        env["XENSTACK_URL"] = f"http://127.0.0.1:{port}/"
    return env


def cmd_shell(args: argparse.Namespace) -> int:
    state = Path(os.path.abspath(args.state_dir))
    env = shell_env(state, args.port)
    argv = ["/bin/sh", "-c", args.command] if args.command else ["/bin/sh", "-i"]
    sys.stdout.flush()
    os.execve(argv[0], argv, env)
    return 1  # not reached
