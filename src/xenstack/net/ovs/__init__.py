"""Open vSwitch: OVSDB through Open vSwitch's Python IDL, flows through ``ovs-ofctl``.

:mod:`.daemons` finds the system's switch or starts a private ``ovsdb-server`` and
``ovs-vswitchd`` under the state directory; :mod:`.ovsdb` is the IDL client;
:mod:`.driver` is the :class:`~xenstack.net.switch.Switch` on top.
"""

from .daemons import OvsDaemons
from .driver import OvsSwitch

__all__ = ["OvsDaemons", "OvsSwitch"]
