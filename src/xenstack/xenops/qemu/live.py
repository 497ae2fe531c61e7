"""Changes to a running QEMU domain's resources: vCPU hot-plug and the balloon.

vCPUs: the domain is built with ``-smp N,maxcpus=VCPUs_max``; more CPUs are QEMU CPU
objects added with ``device_add`` into the free slots ``query-hotpluggable-cpus`` lists (in
topology order, so the guest numbers them as a ``-smp`` of that size would), and told to the
guest agent as XAPI tells it, ``cpu/<n>/availability=online`` (Linux does not online a
hot-added CPU by itself). Fewer CPUs: the CPUs added live are ejected (``device_del``,
which the guest's ACPI acknowledges once it has offlined them); CPUs the domain was built
with are only told ``offline``.

Memory: ``balloon`` to the target, then the ``BALLOON_CHANGE`` events say what the guest
gave back; :func:`balloon` waits (bounded) until the balloon settles near its target.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

from ..interface import XenopsError
from .domain import Domain
from .qmp import Monitor

MIB = 1 << 20
BALLOON_TOLERANCE = 2 * MIB  # XAPI's wait_memory_target_live tolerance is 1 MiB, in pages
BALLOON_WAIT = 30.0  # seconds a guest gets to inflate or deflate its balloon
CPU_WAIT = 60.0


class Backend(Protocol):
    def _qmp(self, dom: Domain) -> Monitor: ...


class VcpuError(XenopsError):
    """QEMU or the guest refused a vCPU change."""


def _slot_key(entry: dict[str, Any]) -> tuple[int, ...]:
    props = entry.get("props", {})
    return tuple(int(props.get(k, 0)) for k in ("socket-id", "die-id", "core-id", "thread-id"))


async def set_vcpus(backend: Backend, dom: Domain, target: int) -> None:
    """Make ``target`` vCPUs online in the domain (1 ≤ target ≤ VCPUs_max is checked above)."""
    qmp = backend._qmp(dom)
    slots: list[dict[str, Any]] = await qmp.execute("query-hotpluggable-cpus")
    present = sorted((s for s in slots if "qom-path" in s), key=_slot_key)
    free = sorted((s for s in slots if "qom-path" not in s), key=_slot_key)
    if target > len(present) + len(free):
        raise VcpuError(f"domain {dom.domid} has room for {len(slots)} vCPUs, not {target}")
    for slot in free[: max(0, target - len(present))]:
        dev_id = "vcpu-" + "-".join(map(str, _slot_key(slot)))
        await qmp.execute("device_add", {"driver": slot["type"], "id": dev_id, **slot["props"]})
        dom.hot_cpus.append(dev_id)
        present.append(slot)
    # fewer: the CPUs added live are ejected (the guest's ACPI offlines them first) ...
    while dom.hot_cpus and len(present) > target:
        await _eject(qmp, dom.hot_cpus[-1])
        dom.hot_cpus.pop()
        present.pop()
    # ... and the agent is told which of the rest to run, as XenServer's is
    if dom.channel is not None:
        for n in range(1, len(present)):
            dom.channel.write(f"cpu/{n}/availability", "online" if n < target else "offline")


async def _eject(qmp: Monitor, dev_id: str) -> None:
    """``device_del`` the CPU and wait till QEMU has removed it (for a CPU, QEMU 7.2 reports
    DEVICE_DELETED of its APIC only, so the CPU list is what tells)."""
    await qmp.execute("device_del", {"id": dev_id})
    path = f"/machine/peripheral/{dev_id}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CPU_WAIT
    while any(c.get("qom-path") == path for c in await qmp.execute("query-cpus-fast")):
        if loop.time() > deadline:
            raise VcpuError(f"the guest did not release {dev_id}")
        await asyncio.sleep(0.05)


async def balloon(backend: Backend, dom: Domain, target: int, static: int) -> None:
    """Ask the balloon for ``target`` bytes (at most ``static``); wait until it is near."""
    target = min(target, static)
    qmp = backend._qmp(dom)
    await qmp.execute("balloon", {"value": int(target)})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BALLOON_WAIT
    while abs(dom.memory_actual - target) > BALLOON_TOLERANCE and loop.time() < deadline:
        changed = qmp.expect("BALLOON_CHANGE")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed, 1.0)
        with contextlib.suppress(XenopsError):
            dom.memory_actual = int((await qmp.execute("query-balloon"))["actual"])
