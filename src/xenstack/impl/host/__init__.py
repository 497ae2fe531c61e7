"""Hosts, their plug-ins, and the hypervisor backend of the toolstack."""
