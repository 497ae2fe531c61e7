"""One conformance suite for every backend (as nova's generic driver tests): the simulator
and the QEMU backend (real guests, the test guest booted by its kernel) pass the same tests
of the contract in ``xenops/interface.py``: start (paused or not), pause and unpause, clean
and hard shutdown, reboot into a new domain, hot-plug, and the errors of each."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from systools import require_root, require_tool

from xenstack.xenops.interface import (
    Backend,
    BadDomainState,
    BootSpec,
    DeviceError,
    DiskSpec,
    DomainExists,
    DomainSpec,
    HostSpec,
    NoSuchDomain,
    OutOfMemory,
)
from xenstack.xenops.simulator import SimulatorBackend

MIB, GIB = 1 << 20, 1 << 30
WAIT = 120.0


class Kit:
    """A backend under test, with what its domains boot and what its guests report."""

    def __init__(self, backend: Backend, boot: BootSpec, scratch: Path) -> None:
        self.backend, self.boot, self.scratch = backend, boot, scratch
        self.keys: dict[int, dict[str, str]] = {}  # what each domain's agent wrote
        self.vms: dict[int, str] = {}
        self.exits: list[tuple[str, int, str]] = []
        backend.on_guest_keys(self._key)
        backend.on_domain_exit(lambda vm, domid, why: self.exits.append((vm, domid, why)))
        backend.host_add(HostSpec("h1", 8 * GIB, GIB, 2))

    def spec(self, vm: str, memory: int = 128 * MIB) -> DomainSpec:
        uuid = f"00000000-0000-4000-8000-{abs(hash(vm)) % 10**12:012d}"
        return DomainSpec(vm, vm, "pv", memory, memory, memory, 0, 1, 1, boot=self.boot, uuid=uuid)

    def disk(self, device: str) -> DiskSpec:
        path = self.scratch / f"disk{device}.raw"
        with open(path, "wb") as f:
            f.truncate(16 * MIB)
        return DiskSpec(device, f"vdi{device}", "Disk", "RW", path=str(path))

    def _key(self, vm_id: str, domid: int, key: str, value: str | None) -> None:
        self.vms[domid] = vm_id
        keys = self.keys.setdefault(domid, {})
        if value is None:
            keys.pop(key, None)
        else:
            keys[key] = value

    async def reported(self, domid: int) -> dict[str, str]:
        """The keys domain ``domid``'s agent wrote, once it said ``data/updated`` (the keys
        are the one path to guest metrics: the toolstack writes them into XenStore)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while loop.time() < deadline:
            if "data/updated" in self.keys.get(domid, {}):
                return self.keys[domid]
            await asyncio.sleep(0.05)
        raise TimeoutError(f"no guest report from domain {domid}")


def simulator(scratch: Path) -> Kit:
    return Kit(SimulatorBackend(guest_agent_delay=0.05), BootSpec(), scratch)


def qemu(scratch: Path) -> Kit:
    require_tool("qemu-system-x86_64")
    require_root()
    from xenstack.testing.guests import guest_image_dir
    from xenstack.xenops.qemu.backend import QemuBackend

    guest = guest_image_dir()
    boot = BootSpec(kernel=str(guest / "vmlinux"), ramdisk=str(guest / "initrd.img"),
                    kernel_args=(guest / "cmdline").read_text().strip())  # fmt: skip
    return Kit(QemuBackend(str(scratch / "state"), accel="tcg"), boot, scratch)


@pytest.fixture(params=[pytest.param(simulator, id="simulator"),
                        pytest.param(qemu, id="qemu", marks=[pytest.mark.qemu, pytest.mark.guest,
                                                             pytest.mark.root])])  # fmt: skip
def kit(request: pytest.FixtureRequest) -> Iterator[Kit]:
    with tempfile.TemporaryDirectory(prefix="xq-conf-") as tmp:
        k: Kit = request.param(Path(tmp))
        yield k
        asyncio.run(_reset(k.backend))


async def _reset(backend: Backend) -> None:
    for info in backend.host_domains("h1"):
        await backend.vm_shutdown(info.vm_id, clean=False)


def test_start_pause_unpause_and_hard_shutdown(kit: Kit) -> None:
    async def go() -> None:
        b = kit.backend
        info = await b.vm_start("h1", kit.spec("a"), paused=True)
        assert info.state == "paused" and info.domid > 0 and info.host_id == "h1"
        with pytest.raises(DomainExists):
            await b.vm_start("h1", kit.spec("a"), paused=False)
        with pytest.raises(BadDomainState):
            await b.vm_pause("a")
        assert (await b.vm_unpause("a")).state == "running"
        assert (await b.vm_pause("a")).state == "paused"
        assert (await b.vm_unpause("a")).state == "running"
        assert [d.vm_id for d in b.host_domains("h1")] == ["a"]
        await b.vm_shutdown("a", clean=False)
        assert b.vm_info("a") is None and b.host_domains("h1") == []
        with pytest.raises(NoSuchDomain):
            await b.vm_shutdown("a", clean=False)
        assert kit.exits == []  # ends the toolstack asked for are not reported

    asyncio.run(go())


def test_the_guest_reports_then_shuts_down_cleanly(kit: Kit) -> None:
    async def go() -> None:
        b = kit.backend
        info = await b.vm_start("h1", kit.spec("b"), paused=False)
        keys = await kit.reported(info.domid)
        assert kit.vms[info.domid] == "b" and keys.get("data/os_name")
        await b.vm_shutdown("b", clean=True)
        assert b.vm_info("b") is None

    asyncio.run(go())


def test_reboot_gives_a_new_domain(kit: Kit) -> None:
    async def go() -> None:
        b = kit.backend
        first = await b.vm_start("h1", kit.spec("c"), paused=False)
        await kit.reported(first.domid)
        second = await b.vm_reboot("c", clean=False, spec=kit.spec("c"))
        assert second.domid != first.domid and second.state == "running"
        await kit.reported(second.domid)
        await b.vm_shutdown("c", clean=False)

    asyncio.run(go())


def test_a_domain_that_does_not_fit_is_refused(kit: Kit) -> None:
    async def go() -> None:
        with pytest.raises(OutOfMemory):
            await kit.backend.vm_start("h1", kit.spec("big", 64 * GIB), paused=False)
        assert kit.backend.vm_info("big") is None

    asyncio.run(go())


def test_disk_hotplug(kit: Kit) -> None:
    async def go() -> None:
        b = kit.backend
        info = await b.vm_start("h1", kit.spec("d"), paused=False)
        await kit.reported(info.domid)
        disk = kit.disk("1")
        await b.vbd_plug("d", "1", disk)
        with pytest.raises(DeviceError):
            await b.vbd_plug("d", "1", disk)
        assert "1" in (b.vm_info("d") or info).vbds
        await b.vbd_unplug("d", "1")
        with pytest.raises(DeviceError):
            await b.vbd_unplug("d", "1")
        assert "1" not in (b.vm_info("d") or info).vbds
        await b.vm_shutdown("d", clean=False)

    asyncio.run(go())


def test_unknown_domains_are_refused(kit: Kit) -> None:
    async def go() -> None:
        b = kit.backend
        for call in (b.vm_pause("zz"), b.vm_unpause("zz"), b.vbd_unplug("zz", "0")):
            with pytest.raises(NoSuchDomain):
                await call
        assert b.vm_info("zz") is None

    asyncio.run(go())


def test_a_guest_that_powers_off_is_reported(kit: Kit) -> None:
    if isinstance(kit.backend, SimulatorBackend):
        pytest.skip("simulated guests never power off by themselves")

    async def go() -> None:
        b = kit.backend
        info = await b.vm_start("h1", kit.spec("e"), paused=False)
        await kit.reported(info.domid)
        await b.guest_write("e", "control/shutdown", "poweroff")  # as if from inside
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while not kit.exits and loop.time() < deadline:
            await asyncio.sleep(0.05)
        assert kit.exits == [("e", info.domid, "poweroff")]
        assert b.vm_info("e") is None

    asyncio.run(go())
