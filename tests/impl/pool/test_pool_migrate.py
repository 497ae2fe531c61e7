"""VM.pool_migrate and VM.resume_on between pool members that are toolstacks of their own.

Three ``xenstack serve`` processes, each with its own simulator backend: A (the master, with
a shared SR) and members B and C. A VM with a disk on the shared SR moves master -> member,
member -> member and member -> master: each time its domain leaves the source's backend and
runs in the destination's (asked of each backend over TLS with the pool secret), its
``resident_on`` follows, its XenStore nodes move from the source host's own XenStore to the
destination's (read over each one's dom0 socket) and its disk stays attached and pluggable.
XAPI's checks answer with its errors and change nothing. A VM suspended on one member resumes
on another.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from poolkit import connect, meta, uuid_of

from xenstack.testing import ServerProcess, failure, halted_vm, server_process

pytestmark = pytest.mark.slow
GIB = 1 << 30


def backend_domains(master: ServerProcess, host_uuid: str) -> dict[str, list[str]]:
    """What the backend of the toolstack running ``host_uuid`` holds: {"domains", "images"}
    (VM refs), asked over TLS with the pool secret."""
    from xenstack.impl.pool.peer import Peer

    entry = orjson.loads(meta(master.state_dir, "pool_members"))[host_uuid]
    secret = meta(master.state_dir, "pool_secret")
    ops = orjson.dumps([["snapshot", []]]).decode()

    async def ask() -> Any:
        peer = Peer.of(entry)
        try:
            return orjson.loads(await peer.call("host.xenstack_backend", secret, ops))
        finally:
            await peer.close()

    snapshot = asyncio.run(ask())["snapshot"]
    domains = sorted(d["vm_id"] for h in snapshot["hosts"].values() for d in h["domains"])
    return {"domains": domains, "images": sorted(snapshot["images"])}


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[tuple[Any, dict[str, str], dict[str, str]]]:
    """(master's xenapi, host ref by name, host uuid by name)."""
    https = ["--https-port", "0"]
    with (
        server_process(tmp_path / "a", [*https, "--sim-storage", "--shared-sr"]) as a,
        server_process(tmp_path / "b", [*https, "--sim-storage"]) as b,
        server_process(tmp_path / "c", [*https, "--sim-storage"]) as c,
    ):
        uuids = {"a": uuid_of(a)}
        for name, member in (("b", b), ("c", c)):
            uuids[name] = uuid_of(member)
            connect(member).pool.join(f"127.0.0.1:{a.port}", "root", a.password)
        xa = connect(a)
        hosts = {name: xa.host.get_by_uuid(uuid) for name, uuid in uuids.items()}
        xa.master = a  # for the backends' snapshots
        xa.servers = {"a": a, "b": b, "c": c}  # for their own XenStores
        yield xa, hosts, uuids


def shared_sr(xa: Any) -> str:
    (sr,) = [s for s in xa.SR.get_all() if xa.SR.get_shared(s) and xa.SR.get_type(s) == "nfs"]
    return str(sr)


def vm_on_shared_disk(xa: Any, name: str) -> tuple[str, str]:
    vm = halted_vm(xa, name)
    vdi = xa.VDI.create(
        {
            "name_label": f"{name} disk",
            "SR": shared_sr(xa),
            "virtual_size": str(GIB),
            "type": "user",
            "sharable": False,
            "read_only": False,
            "other_config": {},
        }
    )
    vbd = xa.VBD.create(
        {
            "VM": vm,
            "VDI": vdi,
            "userdevice": "0",
            "bootable": True,
            "mode": "RW",
            "type": "Disk",
            "empty": False,
            "other_config": {},
            "qos_algorithm_type": "",
            "qos_algorithm_params": {},
        }
    )
    return vm, vbd


def runs_on(xa: Any, uuids: dict[str, str], vm: str) -> list[str]:
    """The toolstacks whose backend runs ``vm``."""
    return [n for n, u in uuids.items() if vm in backend_domains(xa.master, u)["domains"]]


def xenstore_of(xa: Any, name: str, vm: str) -> dict[str, str]:
    """Toolstack ``name``'s own XenStore (its dom0 socket, read with pyxs): the VM's ``/vm``
    node and its domain's name, {} when it has neither."""
    import pyxs

    uuid = xa.VM.get_uuid(vm)
    socket = xa.servers[name].state_dir / "run" / "xenstored" / "socket"
    with pyxs.Client(unix_socket_path=str(socket)) as xs:
        if not xs.exists(f"/vm/{uuid}".encode()):
            return {}
        domid = xs[f"/vm/{uuid}/domid".encode()].decode()
        return {"domid": domid, "name": xs[f"/local/domain/{domid}/name".encode()].decode()}


def stores(xa: Any, vm: str) -> dict[str, dict[str, str]]:
    """Which toolstacks' own XenStores hold the VM's nodes, and what they say."""
    found = {name: xenstore_of(xa, name, vm) for name in xa.servers}
    return {name: nodes for name, nodes in found.items() if nodes}


def wait_for(what: str, check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not in {timeout} s: {what}")
        time.sleep(0.05)


def test_pool_migrate_moves_the_domain_between_member_toolstacks(pool: Any) -> None:
    xa, hosts, uuids = pool
    vm, vbd = vm_on_shared_disk(xa, "mover")
    xa.VM.start_on(vm, hosts["a"], False, False)
    assert runs_on(xa, uuids, vm) == ["a"]
    assert stores(xa, vm) == {"a": {"domid": xa.VM.get_domid(vm), "name": "mover"}}
    for dest in ("b", "c", "a"):  # master -> member, member -> member, member -> master
        xa.VM.pool_migrate(vm, hosts[dest], {})
        assert xa.VM.get_resident_on(vm) == hosts[dest]
        assert xa.VM.get_power_state(vm) == "Running"
        assert runs_on(xa, uuids, vm) == [dest]
        assert xa.VBD.get_currently_attached(vbd)
        assert int(xa.VM.get_domid(vm)) > 0  # a domain of the destination's (its own domids)
        assert xa.VM.get_current_operations(vm) == {}
        # its XenStore nodes left the source host's own store for the destination's
        expected = {dest: {"domid": xa.VM.get_domid(vm), "name": "mover"}}
        wait_for(f"the nodes on {dest} alone", lambda e=expected: stores(xa, vm) == e)
    # the disk on the shared SR stays usable on the host it moved to
    xa.VM.pool_migrate(vm, hosts["b"], {})
    xa.VBD.unplug(vbd)
    assert not xa.VBD.get_currently_attached(vbd)
    xa.VBD.plug(vbd)
    assert xa.VBD.get_currently_attached(vbd)
    xa.VM.pause(vm)  # the member does its operations; a paused VM stays where it is
    assert failure(xa.VM.pool_migrate, vm, hosts["c"], {})[0] == "VM_BAD_POWER_STATE"
    xa.VM.unpause(vm)
    xa.VM.pool_migrate(vm, hosts["c"], {})
    assert runs_on(xa, uuids, vm) == ["c"]
    xa.VM.hard_shutdown(vm)
    assert runs_on(xa, uuids, vm) == []
    wait_for("no store holds the nodes", lambda: stores(xa, vm) == {})
    # the memory each backend holds follows: every member's free memory is back
    free = {n: int(xa.host.compute_free_memory(h)) for n, h in hosts.items()}
    assert free["b"] == free["c"]


def test_pool_migrate_checks_as_xapi_and_changes_nothing(pool: Any) -> None:
    xa, hosts, uuids = pool
    halted = halted_vm(xa, "halted")
    assert failure(xa.VM.pool_migrate, halted, hosts["b"], {})[0] == "VM_BAD_POWER_STATE"
    # a disk on the master's local SR: the member cannot see it
    local_sr = xa.PBD.get_SR(
        next(p for p in xa.host.get_PBDs(hosts["a"]) if xa.SR.get_type(xa.PBD.get_SR(p)) == "ext")
    )
    vm = halted_vm(xa, "local disk")
    vdi = xa.VDI.create(
        {
            "name_label": "local",
            "SR": local_sr,
            "virtual_size": str(GIB),
            "type": "user",
            "sharable": False,
            "read_only": False,
            "other_config": {},
        }
    )
    xa.VBD.create(
        {
            "VM": vm,
            "VDI": vdi,
            "userdevice": "0",
            "bootable": True,
            "mode": "RW",
            "type": "Disk",
            "empty": False,
            "other_config": {},
            "qos_algorithm_type": "",
            "qos_algorithm_params": {},
        }
    )
    xa.VM.start_on(vm, hosts["a"], False, False)
    assert failure(xa.VM.pool_migrate, vm, hosts["b"], {}) == ["VM_REQUIRES_SR", vm, local_sr]
    assert xa.VM.get_resident_on(vm) == hosts["a"]
    assert runs_on(xa, uuids, vm) == ["a"]
    # a host that is not live
    mover, _ = vm_on_shared_disk(xa, "mover")
    xa.VM.start_on(mover, hosts["b"], False, False)
    xa.host.declare_dead(hosts["c"])
    assert failure(xa.VM.pool_migrate, mover, hosts["c"], {})[0] == "HOST_NOT_LIVE"
    assert runs_on(xa, uuids, mover) == ["b"]
    assert xa.VM.get_current_operations(mover) == {}


def test_resume_on_another_member_than_the_image_holder(pool: Any) -> None:
    xa, hosts, uuids = pool
    vm, _ = vm_on_shared_disk(xa, "sleeper")
    xa.VM.start_on(vm, hosts["b"], False, False)
    # suspended to B's local SR (the host's suspend_image_sr): C cannot see the image
    xa.VM.suspend(vm)
    image_sr = xa.VDI.get_SR(xa.VM.get_suspend_VDI(vm))
    assert image_sr != shared_sr(xa)
    assert failure(xa.VM.resume_on, vm, hosts["c"], False, False) == [
        "VM_REQUIRES_SR",
        vm,
        image_sr,
    ]
    assert xa.VM.get_power_state(vm) == "Suspended"
    assert vm in backend_domains(xa.master, uuids["b"])["images"]
    xa.VM.resume_on(vm, hosts["b"], False, False)
    # with the image on the shared SR, any member resumes it
    xa.VM.set_suspend_SR(vm, shared_sr(xa))
    xa.VM.suspend(vm)
    assert xa.VDI.get_SR(xa.VM.get_suspend_VDI(vm)) == shared_sr(xa)
    assert vm in backend_domains(xa.master, uuids["b"])["images"]
    xa.VM.resume_on(vm, hosts["c"], False, False)
    assert xa.VM.get_resident_on(vm) == hosts["c"]
    assert runs_on(xa, uuids, vm) == ["c"]
    assert vm not in backend_domains(xa.master, uuids["b"])["images"]
    # and back to the master, whose own backend resumes it
    xa.VM.suspend(vm)
    xa.VM.resume_on(vm, hosts["a"], False, False)
    assert runs_on(xa, uuids, vm) == ["a"]
    assert xa.VM.get_power_state(vm) == "Running"
