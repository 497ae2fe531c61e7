"""The backend ``xenstack init --backend`` chose is the host's own: kept in its state
directory, it comes back whichever database later serves the state (the pool's in etcd
starts with no record of it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from xenstack.db.persistence import MemoryPersistence
from xenstack.toolstack.root import BACKEND_FILE, Toolstack


def test_the_backend_chosen_at_init_comes_back_on_another_database(tmp_path: Path) -> None:
    state = tmp_path / "state"
    subprocess.run(
        [sys.executable, "-m", "xenstack.cli.main", "init", "--state-dir", str(state),
         "--backend", "qemu"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    kept = state / BACKEND_FILE
    assert kept.read_text().strip() == "qemu"
    assert os.stat(kept).st_mode & 0o077 == 0
    elsewhere = Toolstack(state, persistence=MemoryPersistence())  # no meta of its own
    assert elsewhere.hypervisor.backend.capabilities.name == "qemu"
