"""Moving a domain, or a suspended VM's image, between the backends of two pool members.

A live migration between two toolstacks is driven by the master in three steps, each a
backend call on one side (here, or a member's over the wire): the destination gets ready
(``vm_migrate_receive``: the memory held, for QEMU an incoming listener), the source sends
the domain and lets it go (``vm_migrate_send``), and the destination runs it
(``vm_migrate_finish``). The domain never runs on both hosts: it leaves the source before it
runs on the destination. A send that fails drops the destination's preparations; a
destination that cannot run what it received gives it back to the source.

Resuming a suspended VM on another member than the one holding its image first moves the
image (``vm_image_send``, ``vm_image_receive``; a backend whose images live in the suspend
VDI on a shared SR moves nothing).

The spec is the destination's (a member's disks named by file, see :mod:`.member_disks`).
Once the destination runs the domain the source is told to let go (``vm_migrate_release``:
a QEMU source waits paused until then).

``Do`` is the caller's router: ``do(host, name, *args)`` runs backend operation ``name`` on
the backend of ``host``, None for this toolstack's own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from ...xenops.interface import DomainInfo, DomainSpec, NoSuchDomain, XenopsError
from .wire_backend import domain_info

Do = Callable[..., Awaitable[Any]]


def _info(result: Any) -> DomainInfo:
    return result if isinstance(result, DomainInfo) else domain_info(result)


async def migrate(
    do: Do,
    source: str | None,
    source_host: str,
    dest: str | None,
    dest_host: str,
    info: DomainInfo,
    spec: DomainSpec,
) -> DomainInfo:
    """Move ``info``'s domain from ``source`` (running it on ``source_host``) to ``dest``'s
    ``dest_host``; the domain as it runs there."""
    vm, memory = info.vm_id, info.memory_actual + info.memory_overhead
    to = await do(dest, "vm_migrate_receive", dest_host, spec, memory)
    try:
        state = await do(source, "vm_migrate_send", vm, str(to))
    except BaseException:
        with contextlib.suppress(XenopsError):
            await do(dest, "vm_migrate_abort", vm)
        raise
    try:
        moved = _info(await do(dest, "vm_migrate_finish", vm, state))
    except XenopsError:
        # the destination could not run it: the source takes it back, as it was
        with contextlib.suppress(XenopsError):
            await do(dest, "vm_migrate_abort", vm)
        await do(source, "vm_migrate_receive", source_host, spec, memory)
        await do(source, "vm_migrate_finish", vm, state)
        raise
    with contextlib.suppress(XenopsError):  # what the source kept meanwhile (a paused QEMU)
        await do(source, "vm_migrate_release", vm)
    return moved


async def move_image(do: Do, holder: str | None, dest: str | None, vm: str) -> None:
    """Give the VM's saved image, held by ``holder``'s backend, to ``dest``'s."""
    image = await do(holder, "vm_image_send", vm)
    try:
        await do(dest, "vm_image_receive", vm, image)
    except BaseException:
        with contextlib.suppress(XenopsError):
            await do(holder, "vm_image_receive", vm, image)
        raise


__all__ = ["Do", "NoSuchDomain", "migrate", "move_image"]
