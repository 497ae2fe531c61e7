"""A start that fails answers XAPI's error with the cause, and leaves nothing behind: no
domain, no run directory, no tap, no QEMU."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from systools import require_root, require_tool

from xenstack.errors import ApiError
from xenstack.impl.host.hypervisor import backend_errors
from xenstack.testing.guests import guest_image_dir
from xenstack.xenops.interface import BootSpec, DiskSpec, DomainSpec, HostSpec
from xenstack.xenops.qemu.backend import QemuBackend

pytestmark = [pytest.mark.qemu]
MIB = 1 << 20


def spec(boot: BootSpec, disks: tuple[DiskSpec, ...] = (), memory: int = 128 * MIB) -> DomainSpec:
    return DomainSpec("vm", "vm", "pv", memory, memory, memory, 0, 1, 1, boot=boot,
                      disks=disks, uuid="00000000-0000-4000-8000-00000000e001")  # fmt: skip


def failed_start(backend: QemuBackend, domain: DomainSpec) -> ApiError:
    async def go() -> None:
        with backend_errors():
            await backend.vm_start("h", domain, paused=False)

    with pytest.raises(ApiError) as err:
        asyncio.run(go())
    assert backend.domains == {}
    run = Path(backend.root)
    assert not run.exists() or [p.name for p in run.iterdir()] in ([], ["accel"])
    return err.value


@pytest.fixture
def backend() -> Iterator[QemuBackend]:
    # A short root: a domain's Unix sockets must fit in 108 bytes, which pytest's own
    # temporary directories (deeper under xdist) can exceed.
    with tempfile.TemporaryDirectory(prefix="xs-err-") as root:
        b = QemuBackend(str(Path(root) / "state"), accel="tcg")
        b.host_add(HostSpec("h", 4 << 30, 0, 2))
        yield b


def test_a_missing_kernel_is_bootloader_failed(backend: QemuBackend, tmp_path: Path) -> None:
    err = failed_start(backend, spec(BootSpec(kernel=str(tmp_path / "no-such-vmlinux"))))
    assert err.code == "BOOTLOADER_FAILED" and "no-such-vmlinux" in err.params[1]


def test_a_missing_qemu_is_an_internal_error(tmp_path: Path) -> None:
    b = QemuBackend(str(tmp_path / "state"), accel="tcg", binary="qemu-system-nowhere")
    b.host_add(HostSpec("h", 4 << 30, 0, 2))
    guest_kernel = tmp_path / "k"
    guest_kernel.write_bytes(b"\0")
    err = failed_start(b, spec(BootSpec(kernel=str(guest_kernel))))
    assert err.code == "INTERNAL_ERROR" and "qemu-system-nowhere" in err.params[0]


def test_a_disk_qemu_cannot_open_gives_qemus_words(backend: QemuBackend, tmp_path: Path) -> None:
    require_tool("qemu-system-x86_64")
    require_root()
    guest = guest_image_dir()
    boot = BootSpec(kernel=str(guest / "vmlinux"), ramdisk=str(guest / "initrd.img"))
    disk = DiskSpec("0", "vdi", path=str(tmp_path / "gone.raw"))
    err = failed_start(backend, spec(boot, (disk,)))
    assert err.code == "INTERNAL_ERROR"
    assert "gone.raw" in err.params[0] and "No such file" in err.params[0]
    assert not any(os.path.exists(f"/sys/class/net/vif{n}.0") for n in range(1, 3))


def test_out_of_host_memory(backend: QemuBackend) -> None:
    err = failed_start(backend, spec(BootSpec(kernel="/nonexistent"), memory=64 << 30))
    assert err.code == "HOST_NOT_ENOUGH_FREE_MEMORY"
