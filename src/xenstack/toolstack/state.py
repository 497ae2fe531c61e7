"""The state directory: private to its owner, with the database (SQLite, or etcd's id) in it.

Everything under it is 0700/0600: ``xapi.db`` (password hashes, the pool secret) is created
0600 before SQLite opens it (its -wal and -shm take its mode), and a state found with group
or other access has it taken away at start.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from ..db.persistence import MemoryPersistence, Persistence, SqlitePersistence

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def open_persistence(state_dir: Path | None) -> Persistence:
    if state_dir is None:
        return MemoryPersistence()
    make_private(state_dir)
    database = state_dir / "xapi.db"
    os.close(os.open(database, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE))  # before SQLite does
    return SqlitePersistence(database)


def open_etcd_persistence(state_dir: Path, urls: str) -> Persistence:
    """The host's database in etcd (``--etcd``): its id, made once, is kept in the state."""
    from ..db.etcd import EtcdPersistence

    make_private(state_dir)
    id_file = state_dir / "etcd-host-id"
    if not id_file.exists():
        write_secret(id_file, secrets.token_hex(16))
    return EtcdPersistence(urls, id_file.read_text().strip())


def make_private(state_dir: Path) -> None:
    """Create ``state_dir`` 0700, or take group and other access from it and all it holds.

    Symbolic links are left alone (a link may point out of the state, e.g. to a plug-in).
    """
    state_dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    os.chmod(state_dir, PRIVATE_DIR)
    for root, dirs, files in os.walk(state_dir):
        for name in (*dirs, *files):
            path = os.path.join(root, name)
            mode = os.lstat(path).st_mode
            if not stat.S_ISLNK(mode) and mode & 0o077:
                os.chmod(path, stat.S_IMODE(mode) & ~0o077)


def write_secret(path: Path, text: str) -> None:
    """Write a file only its owner can read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.chmod(path, 0o600)
