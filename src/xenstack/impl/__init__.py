"""Local work, one module per XenAPI class, in subpackages by area. Importing this
package registers them all (the subpackages themselves import nothing)."""

from .devices import vbd as devices_vbd
from .devices import vif as devices_vif
from .host import data_sources as host_data_sources
from .host import host as host_class
from .host import plugins as host_plugins
from .host import power as host_power
from .network import bond as network_bond
from .network import network as network_class
from .network import pif as network_pif
from .network import pif_lifecycle as network_pif_lifecycle
from .network import tunnel as network_tunnel
from .network import vlan as network_vlan
from .pool import carry_import as pool_carry_import
from .pool import eject as pool_eject
from .pool import ha as pool_ha
from .pool import join as pool_join
from .pool import pool as pool_class
from .storage import pbd as storage_pbd
from .storage import sm as storage_sm
from .storage import sr as storage_sr
from .storage import vdi as storage_vdi
from .system import event as system_event
from .system import message as system_message
from .system import session as system_session
from .system import task as system_task
from .vm import clone as vm_clone
from .vm import memory as vm_memory
from .vm import migrate as vm_migrate
from .vm import power as vm_power
from .vm import provision as vm_provision
from .vm import triggers as vm_triggers
from .vm import vm as vm_class
from .vm import xva_import as vm_xva_import

__all__ = [
    "devices_vbd",
    "devices_vif",
    "host_class",
    "host_data_sources",
    "host_plugins",
    "host_power",
    "network_bond",
    "network_class",
    "network_pif",
    "network_pif_lifecycle",
    "network_tunnel",
    "network_vlan",
    "pool_carry_import",
    "pool_class",
    "pool_eject",
    "pool_ha",
    "pool_join",
    "storage_pbd",
    "storage_sm",
    "storage_sr",
    "storage_vdi",
    "system_event",
    "system_message",
    "system_session",
    "system_task",
    "vm_class",
    "vm_clone",
    "vm_memory",
    "vm_migrate",
    "vm_power",
    "vm_provision",
    "vm_triggers",
    "vm_xva_import",
]
