"""What a call carries from the wire to its server function: its origin, or a wait."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, NamedTuple


class Origin(NamedTuple):
    """Where a call came from."""

    peer: str
    transport: str  # "tcp", "tls" or "unix"
    protocol: str  # "xmlrpc" or "jsonrpc"


class Pending:
    """A call that has to wait (for I/O, or for its writes to be durable) before it answers."""

    __slots__ = ("wait",)

    def __init__(self, wait: Awaitable[Any]) -> None:
        self.wait = wait
