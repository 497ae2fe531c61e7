"""pool.sync_database on a pool without etcd: every member toolstack keeps a copy.

A master A and a member B, each a ``xenstack serve`` on its own SQLite database. After
``pool.sync_database`` B's ``pool-db-backup.json`` (0600) holds A's rows at A's
generation (sessions left out); a later change and sync replace it. A member whose
toolstack is down is skipped: the call still answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from poolkit import connect

from xenstack.testing import ServerProcess, halted_vm, server_process

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ...]]:
    root = tmp_path_factory.mktemp("dbb")
    https = ["--https-port", "0"]
    with server_process(root / "a", https) as a, server_process(root / "b", https) as b:
        connect(b).pool.join(f"127.0.0.1:{a.port}", "root", a.password)
        yield a, b


def backup(member: ServerProcess) -> dict[str, Any]:
    path = member.state_dir / "pool-db-backup.json"
    assert path.stat().st_mode & 0o777 == 0o600
    return dict(orjson.loads(path.read_bytes()))


def rows_of(copy: dict[str, Any], cls: str) -> dict[str, dict[str, Any]]:
    return {ref: row for c, ref, row in copy["rows"] if c == cls}


def test_sync_database_gives_the_member_a_copy(pool: tuple[ServerProcess, ...]) -> None:
    a, b = pool
    x = connect(a)
    vm = halted_vm(x, "kept-on-b")
    assert not (b.state_dir / "pool-db-backup.json").exists()  # nothing before a sync
    x.pool.sync_database()
    first = backup(b)
    assert rows_of(first, "VM")[vm]["name_label"] == "kept-on-b"
    assert set(rows_of(first, "host")) == set(x.host.get_all())
    assert not rows_of(first, "session")
    x.VM.set_name_label(vm, "renamed")
    x.pool.sync_database()
    second = backup(b)
    assert rows_of(second, "VM")[vm]["name_label"] == "renamed"
    assert second["generation"] > first["generation"]


def test_a_member_down_is_skipped(pool: tuple[ServerProcess, ...]) -> None:
    a, b = pool
    x = connect(a)
    before = backup(b)
    b.kill()
    x.VM.set_name_label(halted_vm(x, "after"), "after")
    x.pool.sync_database()  # answers: the member is skipped
    assert backup(b) == before
