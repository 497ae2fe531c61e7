"""The shim nova loads: ``compute_driver = xenstack_ext.XenAPIDriver``.

nova imports drivers only as ``nova.virt.<compute_driver>``; this module re-exports the real
class from the ``xenstack_nova`` package (the pattern of nova-powervm's ``powervm_ext``).
"""

from xenstack_nova.driver import XenAPIDriver

__all__ = ["XenAPIDriver"]
