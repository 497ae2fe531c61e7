"""impl/pool/moves.py on two simulator backends in one process: a move between backends.

The domain leaves the source before it runs on the destination, both hosts' memory follows,
and each failure leaves the domain running where it was: a destination without the memory
(OutOfMemory at receive), a send that fails (the destination's hold is dropped), and a
destination that cannot run what it received (the source takes it back).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from xenstack.impl.pool import moves
from xenstack.xenops.interface import DomainSpec, HostSpec, OutOfMemory, XenopsError
from xenstack.xenops.simulator import SimulatorBackend

GIB = 1 << 30


def spec(vm: str = "vm1", memory: int = GIB) -> DomainSpec:
    return DomainSpec(vm, vm, "pv", memory, memory, memory, 8 << 20, 2, 1, vbds=("0",))


def backends(dest_memory: int = 8 * GIB) -> dict[str | None, SimulatorBackend]:
    """None: this toolstack's backend (host "a"); "b": a member's (host "b")."""
    a, b = SimulatorBackend(), SimulatorBackend()
    a.host_add(HostSpec("a", 8 * GIB, 0, 4))
    b.host_add(HostSpec("b", dest_memory, 0, 4))
    return {None: a, "b": b}


def router(found: dict[str | None, SimulatorBackend], fail: str = "") -> moves.Do:
    async def do(host: str | None, name: str, *args: Any) -> Any:
        if name == fail:
            raise XenopsError(f"{name} failed")
        result = getattr(found[host], name)(*args)
        return await result if asyncio.iscoroutine(result) else result

    return do


def start(found: dict[str | None, SimulatorBackend]) -> Any:
    return asyncio.run(found[None].vm_start("a", spec(), False))


def test_the_domain_moves_and_the_memory_follows() -> None:
    found = backends()
    info = start(found)
    a, b = found[None], found["b"]
    moved = asyncio.run(moves.migrate(router(found), None, "a", "b", "b", info, spec()))
    assert (moved.host_id, moved.vbds, moved.memory_actual) == ("b", ("0",), info.memory_actual)
    assert a.vm_info("vm1") is None and b.vm_info("vm1") is not None
    assert a.host_memory_free("a") == 8 * GIB
    assert b.host_memory_free("b") == 8 * GIB - info.memory_actual - info.memory_overhead


def test_a_destination_without_the_memory_refuses_and_the_source_keeps_it() -> None:
    found = backends(dest_memory=GIB // 2)
    info = start(found)
    with pytest.raises(OutOfMemory):
        asyncio.run(moves.migrate(router(found), None, "a", "b", "b", info, spec()))
    assert found[None].vm_info("vm1") is not None
    assert found["b"].host_memory_free("b") == GIB // 2


def test_a_failed_send_drops_the_destinations_hold() -> None:
    found = backends()
    info = start(found)
    with pytest.raises(XenopsError):
        asyncio.run(
            moves.migrate(router(found, "vm_migrate_send"), None, "a", "b", "b", info, spec())
        )
    assert found[None].vm_info("vm1") is not None
    assert found["b"].host_memory_free("b") == 8 * GIB


def test_a_destination_that_cannot_run_it_gives_it_back() -> None:
    found = backends()
    info = start(found)
    calls: list[str] = []
    inner = router(found)

    async def do(host: str | None, name: str, *args: Any) -> Any:
        calls.append(f"{host}:{name}")
        if host == "b" and name == "vm_migrate_finish":
            raise XenopsError("cannot run it")
        return await inner(host, name, *args)

    with pytest.raises(XenopsError):
        asyncio.run(moves.migrate(do, None, "a", "b", "b", info, spec()))
    assert found[None].vm_info("vm1") is not None  # back on the source
    assert calls[-2:] == ["None:vm_migrate_receive", "None:vm_migrate_finish"]


def test_a_saved_image_moves_to_the_backend_that_resumes_it() -> None:
    found = backends()
    start(found)
    asyncio.run(found[None].vm_suspend("vm1"))
    asyncio.run(moves.move_image(router(found), None, "b", "vm1"))
    assert not found[None].vm_has_image("vm1") and found["b"].vm_has_image("vm1")
    resumed = asyncio.run(found["b"].vm_resume("b", "vm1", False))
    assert resumed.host_id == "b"
