"""Where ``xe`` connects and as whom: command line, ``XE_EXTRA_ARGS``, ``~/.xe``, xenstack state.

Priority, as XenServer's ``xe``: explicit options, then ``XE_EXTRA_ARGS`` (comma-separated,
``\\,`` for a literal comma), then the ``~/.xe`` file (``key=value`` lines). With none of them,
xe talks to the local toolstack as root with the password ``xenstack init`` stored in the state
directory (``XENSTACK_STATE_DIR``, default ``./state``).
"""

from __future__ import annotations

import os

from .output import CliError

SWITCHES = {"-s": "server", "-h": "server", "-p": "port", "-u": "username", "-pw": "password",
            "-pwf": "passwordfile", "--passwordfile": "passwordfile"}  # fmt: skip
FLAGS = {"--nossl": "nossl", "--debug": "debug", "--debug-on-fail": "debugonfail"}
KEYS = ("server", "port", "username", "password", "passwordfile", "nossl", "debug",
        "debugonfail", "socket")  # fmt: skip


class Usage(Exception):
    """Print the usage text (exit status 0, as XenServer's xe)."""


class Settings:
    """Connection settings gathered from every source."""

    def __init__(self) -> None:
        self.server: str | None = None
        self.port: int | None = None
        self.username: str | None = None
        self.password: str | None = None
        self.passwordfile: str | None = None
        self.socket: str | None = None

    def set(self, key: str, value: str) -> bool:
        """Take a connection setting; False when ``key`` is not one."""
        if key not in KEYS:
            return False
        if key == "port":
            try:
                self.port = int(value)
            except ValueError:
                raise CliError("Port number must be an integer (0-65535)") from None
            if not 0 <= self.port <= 65535:
                raise CliError("Port number must be an integer (0-65535)")
        elif key in ("server", "username", "password", "passwordfile", "socket"):
            setattr(self, key, value)
        return True


def split_extra(text: str) -> list[str]:
    """``XE_EXTRA_ARGS``: comma-separated, a backslash keeps the next comma."""
    out, cur, i = [], "", 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur += text[i + 1]
            i += 2
            continue
        if ch == ",":
            if cur:
                out.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    if cur:
        out.append(cur)
    return out


def take_options(args: list[str], st: Settings) -> list[str]:
    """Remove connection options from ``args``, recording them; return the rest."""
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in SWITCHES and i + 1 < len(args):
            st.set(SWITCHES[arg], args[i + 1])
            i += 2
            continue
        if arg in FLAGS:
            i += 1
            continue
        key, eq, value = arg.partition("=")
        if not (eq and st.set(key, value)):
            rest.append(arg)
        i += 1
    return rest


def read_rc() -> list[str]:
    path = os.path.join(os.path.expanduser(os.environ.get("HOME", "~")), ".xe")
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError:
        return []
    return [ln.strip() for ln in text.splitlines() if "=" in ln and not ln.lstrip().startswith("#")]


def settings(argv: list[str]) -> tuple[Settings, list[str]]:
    """Connection settings and the command's own arguments."""
    if any(a in ("-help", "--help") for a in argv):
        raise Usage
    explicit = Settings()
    rest = take_options(argv, explicit)
    merged = Settings()
    rc_rest = take_options(read_rc(), merged)
    rest += take_options(split_extra(os.environ.get("XE_EXTRA_ARGS", "")), merged) + rc_rest
    for key in ("server", "port", "username", "password", "passwordfile", "socket"):
        if getattr(explicit, key) is not None:
            setattr(merged, key, getattr(explicit, key))
    if merged.passwordfile:
        _read_password_file(merged)
    return merged, rest


def _read_password_file(st: Settings) -> None:
    try:
        with open(st.passwordfile or "") as fh:
            lines = fh.read().splitlines()
    except OSError:
        raise CliError(f"Error opening password file '{st.passwordfile}'") from None
    if len(lines) < 2:
        raise CliError(
            "password file format: expecting username on the first line, "
            "password on the second line"
        )
    st.username, st.password = lines[0], lines[1]


def endpoint(st: Settings) -> tuple[str, int, str | None, str, str]:
    """(host, port, unix socket or None, user, password) with xenstack's local defaults."""
    state = os.environ.get("XENSTACK_STATE_DIR", "state")
    host = st.server or "127.0.0.1"
    sock = st.socket or os.environ.get("XENSTACK_SOCKET")
    if sock is None and st.server is None and st.port is None:
        candidate = os.path.join(state, "xapi.sock")
        sock = candidate if os.path.exists(candidate) else None
    user = st.username or "root"
    password = st.password
    if password is None:
        try:
            with open(os.path.join(state, "root-password")) as fh:
                password = fh.read().strip()
        except OSError:
            password = ""
    return host, st.port or 8080, sock, user, password
