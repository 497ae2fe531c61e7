"""A member's toolstack restarted on a new HTTPS port: it tells its master where it is.

Two ``xenstack serve`` processes (simulator backends, HTTPS on port 0, so a restart gets a
new one); B joins A's pool. After ``kill -9`` and a restart of B, the master records B's
new address (``other_config:agent_start_time`` of B's host changes, as a XAPI slave's start
sets it) and its work reaches B there. The hidden call wants the pool secret and a member
the master knows. (Real guests living through the restart: tests/xenops/qemu.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from poolkit import connect, joined_pair, member_domains, meta, uuid_of
from vmkit import wait_for

from xenstack.testing import ServerProcess, halted_vm, raw_failure

pytestmark = pytest.mark.slow
RESTARTED = "pool.xenstack_member_restarted"


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess, str]]:
    with joined_pair(tmp_path) as pair:
        yield pair


def _tls_port(master: ServerProcess, member: ServerProcess) -> int:
    return int(orjson.loads(meta(master.state_dir, "pool_members"))[uuid_of(member)]["tls_port"])


def test_a_restarted_member_is_reached_at_its_new_port(pool: Any) -> None:
    a, b, member = pool
    xa = connect(a)
    started, port = xa.host.get_other_config(member)["agent_start_time"], _tls_port(a, b)
    b.kill()
    b.start()
    wait_for(lambda: xa.host.get_other_config(member)["agent_start_time"] != started, 60.0)
    assert _tls_port(a, b) != port
    vm = halted_vm(xa, "after")
    xa.VM.start_on(vm, member, False, False)  # reaches B at its new port
    assert member_domains(a, uuid_of(b), member) == [vm]
    xa.VM.hard_shutdown(vm)
    assert member_domains(a, uuid_of(b), member) == []


def test_the_restart_call_wants_the_pool_secret_and_a_known_member(pool: Any) -> None:
    a, b, _ = pool
    record = {"uuid": uuid_of(b), "address": "127.0.0.1", "port": "1", "hostname": "b"}
    code, *_ = raw_failure(a.url, RESTARTED, "wrong", record)
    assert code == "SESSION_AUTHENTICATION_FAILED"
    secret = meta(a.state_dir, "pool_secret")
    stranger = {**record, "uuid": "00000000-0000-0000-0000-000000000000"}
    assert raw_failure(a.url, RESTARTED, secret, stranger)[0] == "HOST_UNKNOWN_TO_MASTER"
    # the member's address is as it was: its work still reaches it
    xa = connect(a)
    vm = halted_vm(xa, "still")
    xa.VM.start_on(vm, pool[2], False, False)
    assert member_domains(a, uuid_of(b), pool[2]) == [vm]
