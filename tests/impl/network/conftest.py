"""The fixtures of netwire.py: a host over the wire on each switch."""

from netwire import host, machine, ovs_host

__all__ = ["host", "machine", "ovs_host"]
