"""``xenhost.py``'s ``host_join``, called on the master as nova's old XenServer driver called
it when a host was added to an aggregate (plain JSON-able args through host.call_plugin).

Two ``xenstack serve`` processes: B runs nova's compute VM (a disk on B's Local storage).
The plug-in, on A, logs in to B, shuts the compute VM down there, has B join A's pool and
starts the VM again: B's old session answers HOST_IS_SLAVE now, so through A's ``xe
vm-start``. The VM came into the pool with its uuid and runs on B, in B's own backend.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from poolkit import connect, guest_with_disk, member_domains, two_servers

from xenstack.testing import ServerProcess, failure

pytestmark = pytest.mark.slow


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    with two_servers(tmp_path) as both:
        yield both


def join_args(a: ServerProcess, b: ServerProcess, compute_uuid: str, **extra: str) -> Any:
    """The args nova's driver sent (``force`` as ``jsonutils.dumps`` of a bool)."""
    return {
        "compute_uuid": compute_uuid,
        "url": b.url,
        "user": "root",
        "password": b.password,
        "force": json.dumps(False),
        "master_addr": f"127.0.0.1:{a.port}",
        "master_user": "root",
        "master_pass": a.password,
    } | extra


def test_host_join_brings_the_host_and_restarts_its_compute_vm(pool: Any) -> None:
    a, b = pool
    xa, xb = connect(a), connect(b)
    (b_host,) = xb.host.get_all()
    b_uuid = xb.host.get_uuid(b_host)
    compute = guest_with_disk(xb, b, "nova-compute")
    xb.VM.start(compute["ref"], False, True)
    master = xa.pool.get_master(xa.pool.get_all()[0])

    answer = xa.host.call_plugin(master, "xenhost.py", "host_join", join_args(a, b, compute["VM"]))
    assert json.loads(answer) is None
    member = xa.host.get_by_uuid(b_uuid)
    assert sorted(xa.host.get_all()) == sorted([master, member])
    assert failure(xb.VM.get_all) == ["HOST_IS_SLAVE", f"127.0.0.1:{a.port}"]
    vm = xa.VM.get_by_uuid(compute["VM"])
    assert xa.VM.get_power_state(vm) == "Running"
    assert xa.VM.get_resident_on(vm) == member
    assert member_domains(a, b_uuid, member) == [vm]


def test_a_refused_join_still_restarts_the_compute_vm(pool: Any) -> None:
    a, b = pool
    xa, xb = connect(a), connect(b)
    compute = guest_with_disk(xb, b, "nova-compute")
    xb.VM.start(compute["ref"], False, True)
    master = xa.pool.get_master(xa.pool.get_all()[0])
    args = join_args(a, b, compute["VM"], master_pass="wrong")
    code, *_ = failure(xa.host.call_plugin, master, "xenhost.py", "host_join", args)
    assert code == "XENAPI_PLUGIN_FAILURE"
    assert xa.host.get_all() == [master]
    # the join failed, so the joiner's own session started it again, on the joiner
    assert xb.VM.get_power_state(compute["ref"]) == "Running"
