"""The hypervisor interface (:mod:`.interface`) and its backends.

:mod:`.simulator` keeps domains in memory (the embedded default, and a whole pool in one
process), its guests running the simulated agents of :mod:`.guest_agent`; :mod:`.skeleton`
implements nothing and documents the contract. Backends never import the database or the
API layer.
"""
