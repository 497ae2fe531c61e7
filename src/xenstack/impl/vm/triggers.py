"""VM.send_trigger: press one of a running guest's hardware buttons.

XAPI declares the message (pool-admin, VM_BAD_POWER_STATE for a VM that is not Running) but
answers NOT_IMPLEMENTED; xenstack sends the trigger through its backend, named as ``xl
trigger`` names them. The power state is checked, and the operation marked, by the policy
layer (``api.forwarding``) before this runs, on the VM's host. A name ``xl`` does not know is
INVALID_VALUE; a trigger the backend cannot send is NOT_IMPLEMENTED, as XAPI answers for all.
"""

from __future__ import annotations

from ...core.context import Context
from ...errors import ApiError
from ..host.hypervisor import backend_errors, hypervisor
from ..registry import implements

#: ``xl trigger``'s names (libxl's trigger enum)
TRIGGERS = ("nmi", "reset", "init", "power", "sleep", "s3resume")


@implements("VM.send_trigger")
async def send_trigger(ctx: Context, vm: str, trigger: str) -> None:
    if trigger not in TRIGGERS:
        raise ApiError("INVALID_VALUE", ["trigger", trigger])
    with backend_errors():
        await hypervisor(ctx).backend.vm_send_trigger(vm, trigger)
