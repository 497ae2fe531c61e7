"""The shared bottom of the toolstack: ids and clock, the call's context and origin, value text,
XML-safe strings, the role and task-ownership rules impl shares with the api layer (``access``).

Every layer above may import this package; it imports only ``db``, ``idl`` and ``errors``.
"""
