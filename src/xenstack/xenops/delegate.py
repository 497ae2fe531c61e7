"""A backend that hands every call to another: the base of wrappers that add one concern.

A wrapper (a journal of domain lives, a router to pool members) subclasses
:class:`DelegatingBackend` and overrides only the calls it adds to; everything else, the
guest-agent channel, consoles, adoption and closing included, reaches ``local`` unchanged, so a
contract that grows cannot be silently cut off by a wrapper that predates it. Listeners are
registered on the wrapped backend, which is the one that reports.
"""

from __future__ import annotations

from .interface import (
    Backend,
    DiskSpec,
    DomainExitListener,
    DomainInfo,
    DomainSpec,
    DomainStats,
    GuestKeyListener,
    GuestListener,
    HostSpec,
    NicSpec,
)


class DelegatingBackend(Backend):
    def __init__(self, local: Backend) -> None:
        self.local = local
        self.capabilities = local.capabilities

    # listeners and the guest channel
    def on_guest_report(self, listener: GuestListener | None) -> None:
        self.local.on_guest_report(listener)

    def on_guest_keys(self, listener: GuestKeyListener | None) -> None:
        self.local.on_guest_keys(listener)

    def on_domain_exit(self, listener: DomainExitListener | None) -> None:
        self.local.on_domain_exit(listener)

    async def guest_write(self, vm_id: str, key: str, value: str) -> None:
        await self.local.guest_write(vm_id, key, value)

    async def adopt(self, host_id: str, spec: DomainSpec, info: DomainInfo) -> DomainInfo | None:
        return await self.local.adopt(host_id, spec, info)

    async def host_facts(self, probe: bool = True) -> dict[str, object] | None:
        return await self.local.host_facts(probe)

    async def close(self) -> None:
        await self.local.close()

    def console(self, vm_id: str) -> str:
        return self.local.console(vm_id)

    def console_log(self, vm_id: str) -> str:
        return self.local.console_log(vm_id)

    # metrics
    def vm_stats(self, vm_id: str) -> DomainStats | None:
        return self.local.vm_stats(vm_id)

    async def refresh_stats(self) -> None:
        await self.local.refresh_stats()

    # hosts
    def host_add(self, spec: HostSpec) -> None:
        self.local.host_add(spec)

    def host_remove(self, host_id: str) -> None:
        self.local.host_remove(host_id)

    def host_ids(self) -> list[str]:
        return self.local.host_ids()

    def host_memory_free(self, host_id: str) -> int:
        return self.local.host_memory_free(host_id)

    def host_domains(self, host_id: str) -> list[DomainInfo]:
        return self.local.host_domains(host_id)

    # VMs
    def vm_info(self, vm_id: str) -> DomainInfo | None:
        return self.local.vm_info(vm_id)

    def vm_has_image(self, vm_id: str) -> bool:
        return self.local.vm_has_image(vm_id)

    async def vm_start(self, host_id: str, spec: DomainSpec, paused: bool) -> DomainInfo:
        return await self.local.vm_start(host_id, spec, paused)

    async def vm_shutdown(self, vm_id: str, clean: bool) -> None:
        await self.local.vm_shutdown(vm_id, clean)

    async def vm_reboot(self, vm_id: str, clean: bool, spec: DomainSpec) -> DomainInfo:
        return await self.local.vm_reboot(vm_id, clean, spec)

    async def vm_pause(self, vm_id: str) -> DomainInfo:
        return await self.local.vm_pause(vm_id)

    async def vm_unpause(self, vm_id: str) -> DomainInfo:
        return await self.local.vm_unpause(vm_id)

    async def vm_suspend(self, vm_id: str, image: DiskSpec | None = None) -> int:
        return await self.local.vm_suspend(vm_id, image)

    async def vm_resume(
        self,
        host_id: str,
        vm_id: str,
        paused: bool,
        spec: DomainSpec | None = None,
        image: DiskSpec | None = None,
    ) -> DomainInfo:
        return await self.local.vm_resume(host_id, vm_id, paused, spec, image)

    async def vm_save_image(self, vm_id: str, image_id: str, image: DiskSpec | None = None) -> int:
        return await self.local.vm_save_image(vm_id, image_id, image)

    def vm_copy_image(self, image_id: str, vm_id: str) -> None:
        self.local.vm_copy_image(image_id, vm_id)

    def vm_discard_image(self, vm_id: str) -> None:
        self.local.vm_discard_image(vm_id)

    async def vm_migrate(
        self, vm_id: str, host_id: str, spec: DomainSpec | None = None
    ) -> DomainInfo:
        return await self.local.vm_migrate(vm_id, host_id, spec)

    async def vm_set_vcpus(self, vm_id: str, vcpus: int) -> DomainInfo:
        return await self.local.vm_set_vcpus(vm_id, vcpus)

    async def vm_set_memory_dynamic_range(self, vm_id: str, low: int, high: int) -> DomainInfo:
        return await self.local.vm_set_memory_dynamic_range(vm_id, low, high)

    def vm_reset(self, vm_id: str) -> None:
        self.local.vm_reset(vm_id)

    # devices
    async def vbd_media(self, vm_id: str, device: str, disk: DiskSpec) -> None:
        await self.local.vbd_media(vm_id, device, disk)

    async def vbd_plug(self, vm_id: str, device: str, disk: DiskSpec | None = None) -> None:
        await self.local.vbd_plug(vm_id, device, disk)

    async def vbd_unplug(self, vm_id: str, device: str) -> None:
        await self.local.vbd_unplug(vm_id, device)

    async def vif_plug(self, vm_id: str, device: str, nic: NicSpec | None = None) -> None:
        await self.local.vif_plug(vm_id, device, nic)

    async def vif_unplug(self, vm_id: str, device: str) -> None:
        await self.local.vif_unplug(vm_id, device)

    # moving a domain to another backend
    async def vm_migrate_receive(self, host_id: str, spec: DomainSpec, memory: int) -> str:
        return await self.local.vm_migrate_receive(host_id, spec, memory)

    async def vm_migrate_send(self, vm_id: str, to: str) -> dict[str, object]:
        return await self.local.vm_migrate_send(vm_id, to)

    async def vm_migrate_finish(self, vm_id: str, state: dict[str, object]) -> DomainInfo:
        return await self.local.vm_migrate_finish(vm_id, state)

    def vm_migrate_abort(self, vm_id: str) -> None:
        self.local.vm_migrate_abort(vm_id)

    async def vm_migrate_release(self, vm_id: str) -> None:
        await self.local.vm_migrate_release(vm_id)

    def vm_migrating_in(self, vm_id: str) -> bool:
        return self.local.vm_migrating_in(vm_id)

    def vm_image_send(self, vm_id: str) -> dict[str, object]:
        return self.local.vm_image_send(vm_id)

    def vm_image_receive(self, vm_id: str, image: dict[str, object]) -> None:
        self.local.vm_image_receive(vm_id, image)

    async def vm_send_trigger(self, vm_id: str, trigger: str) -> None:
        await self.local.vm_send_trigger(vm_id, trigger)
