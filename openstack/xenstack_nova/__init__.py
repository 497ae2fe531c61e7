"""xenstack-nova: an OpenStack nova compute driver for XenAPI hosts.

It talks to any XenAPI server (xenstack, XenServer, XCP-ng) only through the PyPI ``XenAPI``
SDK. nova loads it through the shim ``nova.virt.xenstack_ext`` (``compute_driver =
xenstack_ext.XenAPIDriver``).
"""
