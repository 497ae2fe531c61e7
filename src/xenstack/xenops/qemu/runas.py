"""QEMU deprivileged: a system user of its own, and only what it must reach after it drops.

XenServer runs each device model as a user of its own; here one system user (made with
``useradd --system`` if missing) is enough. QEMU starts as root with ``-runas USER``: it opens
its taps, kernel, initrd, log and listening sockets first, then gives up root (and
``-sandbox on`` stays). What it opens later, as that user, is what :func:`grant` makes
reachable: the NBD sockets it reconnects to (``reconnect-delay``, after a toolstack restart)
or gets at hot-plug, and the suspend image an ``exec:`` child of QEMU writes. Directories on
the way get search permission for the user's group only (mode ``g+x``, no listing); a
socket gets the group and ``g+rw``. ``-daemonize`` and ``-runas`` agree: the pid file is
written as root before QEMU drops, and the toolstack (root) ends it with a signal.
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from dataclasses import dataclass

from ..interface import XenopsError


@dataclass(frozen=True, slots=True)
class QemuUser:
    name: str
    uid: int
    gid: int


def ensure_user(name: str) -> QemuUser:
    """The system user ``name``, made (no home, no shell) if it does not exist."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        proc = subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if proc.returncode not in (0, 9):  # 9: made meanwhile by someone else
            raise XenopsError(f"useradd {name}: {proc.stderr.strip()}") from None
        entry = pwd.getpwnam(name)
    grp.getgrgid(entry.pw_gid)
    return QemuUser(name, entry.pw_uid, entry.pw_gid)


def grant(user: QemuUser | None, socket_path: str, top: str) -> None:
    """Let ``user`` connect to ``socket_path``: the group on it and on the directories
    from ``top`` down to it, with search permission only."""
    if user is None or not socket_path:
        return
    path = os.path.abspath(socket_path)
    top = os.path.abspath(top)
    dirs = []
    d = os.path.dirname(path)
    while d.startswith(top) and len(d) >= len(top):
        dirs.append(d)
        d = os.path.dirname(d)
    _check_above(user, top)
    for d in dirs:
        st = os.stat(d)
        mode = st.st_mode & 0o7777
        if st.st_gid != user.gid:
            os.chown(d, -1, user.gid)
            mode &= ~0o070  # the old group's rights are not the new group's
        os.chmod(d, mode | 0o010)
    os.chown(path, -1, user.gid)
    os.chmod(path, 0o660)


def _check_above(user: QemuUser, top: str) -> None:
    """The directories above ``top`` are not the toolstack's to change: say which one keeps
    QEMU's user out (QEMU would otherwise hang on its next reconnection, much later)."""
    d = os.path.dirname(top)
    while True:
        st = os.stat(d)
        if not (
            st.st_mode & 0o001
            or (st.st_mode & 0o010 and st.st_gid == user.gid)
            or (st.st_mode & 0o100 and st.st_uid == user.uid)
        ):
            raise XenopsError(f"QEMU's user {user.name} cannot pass {d}: make it searchable (o+x)")
        if d == os.path.dirname(d):
            return
        d = os.path.dirname(d)
