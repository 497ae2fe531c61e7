"""Local work, one module per XenAPI class. Importing this package registers them all."""

from . import event, session, task  # noqa: I001  (one line per engineer)
from . import host, pool, vm, vm_clone, vm_memory, vm_migrate, vm_power, vm_provision  # VM
from . import bond, host_plugins, message, network, pbd, pif, pif_lifecycle  # pool objects
from . import sm, sr, tunnel, vbd, vdi, vif, vlan  # devices and storage
from . import vm_import  # VM import/export (XVA)
from . import pool_eject, pool_join  # pool membership

__all__ = ["event", "session", "task"]
__all__ += ["host", "pool", "vm", "vm_clone", "vm_memory", "vm_migrate", "vm_power", "vm_provision"]
__all__ += ["bond", "host_plugins", "message", "network", "pbd", "pif", "pif_lifecycle", "sm"]
__all__ += ["sr", "tunnel", "vbd", "vdi", "vif", "vlan"]
__all__ += ["vm_import"]
__all__ += ["pool_eject", "pool_join"]
