"""The virtual switch of one host: bridges, fake VLAN bridges, bonds, tunnels, VIF ports.

:class:`~xenstack.net.switch.Switch` is the interface; :mod:`.simulated` keeps a switch in
memory (the embedded default, no root), :mod:`.ovs` drives Open vSwitch through OVSDB (Open
vSwitch's Python IDL) and ``ovs-ofctl``. Names and layout are XenServer's: bridges ``xenbrN``
(with their PIF) and ``xapiN``, VLANs as fake bridges, VIF ports ``vif<domid>.<device>`` with
the ``external_ids`` of XenServer's vif scripts, locking flows as ``setup-vif-rules`` makes
them. The package knows no database: impl/network tells it what to build.
"""

from .model import (
    BridgeSpec,
    BridgeState,
    Locking,
    PortState,
    SwitchError,
    VifSpec,
)
from .switch import Switch

__all__ = [
    "BridgeSpec",
    "BridgeState",
    "Locking",
    "PortState",
    "Switch",
    "SwitchError",
    "VifSpec",
]
