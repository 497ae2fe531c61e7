"""The shared bottom of the toolstack: ids and clock, the call's context and origin, value text.

Every layer above may import this package; it imports only ``db``, ``idl`` and ``errors``.
"""
