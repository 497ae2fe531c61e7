"""The one-line explanation ``xe`` prints above an error's parameters (our own words)."""

from __future__ import annotations

MESSAGES = {
    "HANDLE_INVALID": "The object you referred to does not exist (or no longer exists).",
    "UUID_INVALID": "No object of this class has the uuid you gave.",
    "NOT_IMPLEMENTED": "This toolstack does not implement the requested function yet.",
    "MESSAGE_METHOD_UNKNOWN": "The server does not know the message the client sent.",
    "INTERNAL_ERROR": "The server met an internal error.",
    "INVALID_VALUE": "A value you gave is not valid for this parameter.",
    "FIELD_TYPE_ERROR": "A field was given a value of the wrong type.",
    "MAP_DUPLICATE_KEY": "The map already holds this key.",
    "OPERATION_NOT_ALLOWED": "The operation is not allowed.",
    "OTHER_OPERATION_IN_PROGRESS": "Another operation on this object is in progress.",
    "PERMISSION_DENIED": "You are not allowed to do this.",
    "RBAC_PERMISSION_DENIED": "Your role does not give you permission for this call.",
    "SESSION_INVALID": "The session is not valid (it may have expired).",
    "SESSION_AUTHORIZATION_FAILED": "The user is not allowed to log in.",
    "VM_BAD_POWER_STATE": "The VM is not in the power state this operation needs.",
    "VM_IS_TEMPLATE": "The operation cannot be done on a template.",
    "VM_HAS_PCI_ATTACHED": "The VM has PCI devices attached.",
    "VM_MISSING_PV_DRIVERS": "The VM has no PV drivers installed, which this operation needs.",
    "VM_REQUIRES_SR": "The VM needs a storage repository that is not available.",
    "HOST_NOT_ENOUGH_FREE_MEMORY": "The host has too little free memory to start the VM.",
    "HOST_OFFLINE": "The host is offline.",
    "HOST_IS_SLAVE": "This host is a pool member; talk to the pool master instead.",
    "HOST_NOT_DISABLED": "The host must be disabled first.",
    "HA_NOT_ENABLED": "High availability is not enabled on this pool.",
    "HA_IS_ENABLED": "High availability is enabled; disable it first.",
    "HA_NOT_INSTALLED": "High availability is not installed on this host.",
    "SR_HAS_NO_PBDS": "The SR has no PBDs, so it is not attached to any host.",
    "SR_BACKEND_FAILURE": "The storage back-end reported an error.",
    "VDI_IN_USE": "The disk is in use.",
    "VDI_READ_ONLY": "The disk is read-only.",
    "DEVICE_ALREADY_ATTACHED": "The device is already attached.",
    "DEVICE_ALREADY_DETACHED": "The device is already detached.",
    "DEVICE_ALREADY_EXISTS": "A device with this number already exists on the VM.",
    "VBD_IS_EMPTY": "The drive holds no media.",
    "VBD_NOT_EMPTY": "The drive already holds media; eject it first.",
    "VBD_NOT_REMOVABLE_MEDIA": "Only removable drives (CD, floppy) can do this.",
    "VM_NO_EMPTY_CD_VBD": "The VM has no empty CD drive.",
    "INVALID_DEVICE": "The device name is not valid.",
    "NETWORK_ALREADY_CONNECTED": "The PIF's network is already connected to a PIF on this host.",
    "PIF_IS_PHYSICAL": "The operation cannot be done on a physical PIF.",
    "VLAN_TAG_INVALID": "The VLAN tag is out of range.",
    "TASK_CANCELLED": "The task was cancelled.",
    "EVENTS_LOST": "Events were lost; the client should reregister.",
    "LICENCE_RESTRICTION": "The licence does not allow this operation.",
    "POOL_JOINING_HOST_CONNECTION_FAILED": "The host could not contact the pool master.",
    "JOINING_HOST_CANNOT_CONTAIN_SHARED_SRS": "A host with shared SRs cannot join a pool.",
    "CANNOT_CONTACT_HOST": "The host cannot be contacted.",
    "VALUE_NOT_SUPPORTED": "The value is not supported here.",
    "VM_LACKS_FEATURE": "The VM's guest does not support this operation (no PV drivers or "
    "feature flag).",
    "VM_REVERT_FAILED": "The VM could not be reverted to the snapshot.",
    "VM_MIGRATE_FAILED": "The VM could not be migrated.",
    "VM_NOT_RESIDENT_HERE": "The VM is not running on this host.",
    "VBD_NOT_UNPLUGGABLE": "The drive is marked as not unpluggable.",
    "SR_HAS_PBD": "The SR is still attached to a host; unplug and destroy its PBDs first.",
    "SR_NOT_EMPTY": "The SR still holds disks.",
    "SR_OPERATION_NOT_SUPPORTED": "The SR's driver does not support this operation.",
    "VDI_MISSING": "The SR has no disk with this location.",
    "PIF_BOND_NEEDS_MORE_MEMBERS": "A bond needs at least two interfaces.",
    "PIF_ALREADY_BONDED": "The interface is already a member of a bond.",
    "PIF_VLAN_EXISTS": "The interface already carries a VLAN with this tag.",
    "HOST_CANNOT_ATTACH_NETWORK": "The host cannot attach to this network.",
    "XENAPI_MISSING_PLUGIN": "The host has no plug-in with this name.",
    "XENAPI_PLUGIN_FAILURE": "The plug-in failed.",
    "MEMORY_CONSTRAINT_VIOLATION": "The memory limits do not satisfy static-min <= dynamic-min "
    "<= dynamic-max <= static-max.",
}

# error parameter names that tell which class a reference belongs to
PARAM_CLASSES = {
    "vm": "VM", "host": "host", "sr": "SR", "vdi": "VDI", "vbd": "VBD", "vif": "VIF",
    "network": "network", "pif": "PIF", "pool": "pool", "task": "task", "pbd": "PBD",
    "bond": "Bond", "vlan": "VLAN",
}  # fmt: skip


def message_for(code: str) -> str:
    """Our explanation of ``code``; for codes without one, the code itself made readable."""
    if code in MESSAGES:
        return MESSAGES[code]
    words = code.lower().replace("_", " ")
    return f"The server refused the request: {words}."
