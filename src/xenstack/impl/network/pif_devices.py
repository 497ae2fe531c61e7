"""Which kernel devices may become PIFs: only those xenstack was given.

Taking the machine's uplink into a bridge would cut the host off, so on a real switch a PIF's
device must be one ``xenstack init --pif DEV`` named or one an administrator introduced
(``PIF.introduce``) since. The list is kept in the state's meta data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...core.context import Services

PIF_DEVICES_META = "pif_devices"


def allowed_devices(services: Services) -> set[str]:
    text = services.persistence.get_meta(PIF_DEVICES_META) or ""
    return {d for d in text.split(",") if d}


def allow_device(services: Services, device: str) -> None:
    devices = allowed_devices(services) | {device}
    services.persistence.set_meta(PIF_DEVICES_META, ",".join(sorted(devices)))


def real_devices(services: Services) -> bool:
    """Whether PIFs are kernel devices (a real switch) rather than simulated NICs."""
    return bool(services.switch.kind != "simulated")
