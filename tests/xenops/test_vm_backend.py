"""The hypervisor interface itself: the simulator's bookkeeping, the skeleton's contract,
and the layer rule that backends import neither the database nor the API layer."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest

from xenstack.xenops import interface
from xenstack.xenops.interface import DomainSpec, HostSpec, OutOfMemory, Unimplemented
from xenstack.xenops.simulator import SimulatorBackend
from xenstack.xenops.skeleton import SkeletonBackend

GIB = 1 << 30
XENOPS = Path(interface.__file__).parent


def spec(vm: str, memory: int = GIB) -> DomainSpec:
    return DomainSpec(vm, vm, "pv", memory, memory, memory, 0, 2, 1)


def test_backends_import_no_db_or_api() -> None:
    for path in XENOPS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.lstrip(".").startswith(("db", "api", "impl")), path


def test_simulator_accounts_memory_per_host() -> None:
    async def run() -> None:
        sim = SimulatorBackend()
        for h in ("a", "b"):
            sim.host_add(HostSpec(h, 4 * GIB, GIB, 4))
        info = await sim.vm_start("a", spec("vm1"), paused=False)
        assert info.host_id == "a" and info.domid > 0 and sim.host_memory_free("a") == 2 * GIB
        with pytest.raises(OutOfMemory) as err:
            await sim.vm_start("a", spec("vm2", 3 * GIB), paused=False)
        assert (err.value.needed, err.value.available) == (3 * GIB, 2 * GIB)
        moved = await sim.vm_migrate("vm1", "b")
        assert moved.host_id == "b" and sim.host_memory_free("a") == 3 * GIB
        await sim.vm_suspend("vm1")
        assert sim.vm_info("vm1") is None and sim.vm_has_image("vm1")
        assert sim.host_memory_free("b") == 3 * GIB
        resumed = await sim.vm_resume("a", "vm1", paused=True)
        assert resumed.state == "paused" and not sim.vm_has_image("vm1")
        await sim.vm_shutdown("vm1", clean=False)
        assert sim.host_domains("a") == [] and sim.host_memory_free("a") == 3 * GIB

    asyncio.run(run())


def test_skeleton_raises_unimplemented() -> None:
    sk = SkeletonBackend()
    sk.host_add(HostSpec("h", GIB, 0, 1))
    assert sk.capabilities.live_migration is False and sk.host_memory_free("h") == GIB
    with pytest.raises(Unimplemented) as err:
        asyncio.run(sk.vm_start("h", spec("vm"), paused=False))
    assert err.value.operation == "VM.start"
