"""A backend that does nothing: every operation raises :class:`Unimplemented`.

It is the contract in executable form. A new backend starts as a copy of this class and
replaces one method at a time; the toolstack answers ``NOT_IMPLEMENTED`` for what is missing.
Host bookkeeping is the one thing it keeps, so the toolstack can still list hosts.
"""

from __future__ import annotations

from .interface import (
    Backend,
    Capabilities,
    DiskSpec,
    DomainInfo,
    DomainSpec,
    HostSpec,
    NicSpec,
    Unimplemented,
    UnknownHost,
)

SKELETON_CAPABILITIES = Capabilities(name="skeleton")  # offers nothing


class SkeletonBackend(Backend):
    """Knows hosts, runs nothing."""

    capabilities = SKELETON_CAPABILITIES

    def __init__(self) -> None:
        self.hosts: dict[str, HostSpec] = {}

    def host_add(self, spec: HostSpec) -> None:
        self.hosts[spec.host_id] = spec

    def host_remove(self, host_id: str) -> None:
        self.hosts.pop(host_id, None)

    def host_ids(self) -> list[str]:
        return list(self.hosts)

    def host_memory_free(self, host_id: str) -> int:
        spec = self.hosts.get(host_id)
        if spec is None:
            raise UnknownHost(host_id)
        return spec.memory_total - spec.memory_reserved

    def host_domains(self, host_id: str) -> list[DomainInfo]:
        return []

    def vm_info(self, vm_id: str) -> DomainInfo | None:
        return None

    def vm_has_image(self, vm_id: str) -> bool:
        return False

    async def vm_start(self, host_id: str, spec: DomainSpec, paused: bool) -> DomainInfo:
        raise Unimplemented("VM.start")

    async def vm_shutdown(self, vm_id: str, clean: bool) -> None:
        raise Unimplemented("VM.shutdown")

    async def vm_reboot(self, vm_id: str, clean: bool, spec: DomainSpec) -> DomainInfo:
        raise Unimplemented("VM.reboot")

    async def vm_pause(self, vm_id: str) -> DomainInfo:
        raise Unimplemented("VM.pause")

    async def vm_unpause(self, vm_id: str) -> DomainInfo:
        raise Unimplemented("VM.unpause")

    async def vm_suspend(self, vm_id: str, image: DiskSpec | None = None) -> int:
        raise Unimplemented("VM.suspend")

    async def vm_resume(
        self,
        host_id: str,
        vm_id: str,
        paused: bool,
        spec: DomainSpec | None = None,
        image: DiskSpec | None = None,
    ) -> DomainInfo:
        raise Unimplemented("VM.resume")

    async def vm_save_image(self, vm_id: str, image_id: str, image: DiskSpec | None = None) -> int:
        raise Unimplemented("VM.checkpoint")

    def vm_copy_image(self, image_id: str, vm_id: str) -> None:
        raise Unimplemented("VM.revert")

    def vm_discard_image(self, vm_id: str) -> None:
        raise Unimplemented("VM.discard_image")

    async def vm_migrate(
        self, vm_id: str, host_id: str, spec: DomainSpec | None = None
    ) -> DomainInfo:
        raise Unimplemented("VM.migrate")

    async def vm_set_vcpus(self, vm_id: str, vcpus: int) -> DomainInfo:
        raise Unimplemented("VM.set_vcpus")

    async def vm_set_memory_dynamic_range(self, vm_id: str, low: int, high: int) -> DomainInfo:
        raise Unimplemented("VM.set_memory_dynamic_range")

    def vm_reset(self, vm_id: str) -> None:
        raise Unimplemented("VM.reset")

    async def vbd_plug(self, vm_id: str, device: str, disk: DiskSpec | None = None) -> None:
        raise Unimplemented("VBD.plug")

    async def vbd_unplug(self, vm_id: str, device: str) -> None:
        raise Unimplemented("VBD.unplug")

    async def vif_plug(self, vm_id: str, device: str, nic: NicSpec | None = None) -> None:
        raise Unimplemented("VIF.plug")

    async def vif_unplug(self, vm_id: str, device: str) -> None:
        raise Unimplemented("VIF.unplug")
